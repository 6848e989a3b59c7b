"""How a batch run ended: the counts per outcome, from the journal's final entries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs

from .journal import JournalEntry

__all__ = ["BatchResult"]


@attrs.frozen
class BatchResult:
    """How a batch run ended.

    Attributes:
        entries: the final journal entry of every item, in input order.
        succeeded: items whose video is on disk (or that succeeded, when not downloading).
        failed: items whose task failed, or whose create the server refused.
        uncertain: items whose create may or may not have made a task; a re-run looks them up.
        incomplete: items still running, or succeeded but not yet downloaded (a timeout or a
            download error); a re-run continues them.
        files: the downloaded files, in input order.
        timed_out: the batch's ``timeout`` passed before every task finished.
    """

    entries: tuple[JournalEntry, ...]
    succeeded: int
    failed: int
    uncertain: int
    incomplete: int
    files: tuple[Path, ...]
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """``True`` when every item succeeded (and was downloaded)."""
        return self.failed == 0 and self.uncertain == 0 and self.incomplete == 0

    @classmethod
    def tally(
        cls,
        entries: Sequence[JournalEntry],
        items: int,
        *,
        downloading: bool,
        timed_out: bool,
    ) -> BatchResult:
        """Count the final *entries* of a run over *items* inputs.

        Args:
            entries: each input's final entry, in input order (inputs never started have none).
            items: how many inputs the run had.
            downloading: whether the run downloads results (then only a file counts as done).
            timed_out: whether the run's deadline passed.
        """
        succeeded = failed = uncertain = 0
        files: list[Path] = []
        for entry in entries:
            if entry.status == "downloaded":
                succeeded += 1
                if entry.file_path:
                    files.append(Path(entry.file_path))
            elif entry.status == "succeed" and not downloading:
                succeeded += 1
            elif entry.status == "failed":
                failed += 1
            elif entry.status == "uncertain":
                uncertain += 1
        return cls(
            entries=tuple(entries),
            succeeded=succeeded,
            failed=failed,
            uncertain=uncertain,
            incomplete=items - succeeded - failed - uncertain,
            files=tuple(files),
            timed_out=timed_out,
        )
