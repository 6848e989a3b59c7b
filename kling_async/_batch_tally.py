"""What a batch display counts: entries by status, client events, and the time left.

No drawing here: ``progress`` renders these counts as a rich bar or as plain lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from .errors import ConcurrencyLimitError, RateLimitError
from .events import ConcurrencyLimited, Event, Retrying
from .journal import JournalEntry

__all__ = ["BatchTally", "EtaEstimate"]

_SUCCEEDED = frozenset({"succeed", "downloaded"})
_FINISHED = _SUCCEEDED | {"failed"}
_CREATED = frozenset({"created", "succeed", "downloaded"})


class EtaEstimate:
    """Time left in a batch, from the items this run has completed so far.

    Items resumed already done and bursts of completions say nothing about the pace, so the
    estimate is ``remaining x elapsed / completed in this run``, and there is none until
    *min_completed* items have completed in this run.

    Args:
        clock: seconds from a monotonic clock (tests pass their own).
        min_completed: completions to see before estimating.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, min_completed: int = 3
    ) -> None:
        self._clock = clock
        self._start = clock()
        self._min_completed = max(1, min_completed)
        self.completed = 0
        """Items that completed in this run."""

    def seconds_left(self, remaining: int) -> float | None:
        """Estimated seconds until *remaining* more items complete; ``None`` while unknown."""
        if remaining <= 0:
            return 0.0
        if self.completed < self._min_completed:
            return None
        return remaining * (self._clock() - self._start) / self.completed


class BatchTally:
    """Counts of a batch's entries by what has happened to them, plus client event counts.

    Args:
        total: how many items the batch has.
        download: whether the batch downloads (then an item is done once downloaded).
    """

    def __init__(
        self, total: int, *, download: bool = True, eta: EtaEstimate | None = None
    ) -> None:
        self.total = total
        self.download = download
        self.eta = eta or EtaEstimate()
        """The time-left estimate, fed by the items that complete in this run."""
        self.statuses: dict[str, str] = {}
        self.task_ids: dict[str, str | None] = {}
        self.rate_limited = 0
        """Waits caused by a "too many requests" answer."""
        self.concurrency_limited = 0
        """1303 answers: too many tasks running on the account."""
        self.retries = 0
        """Retried requests (any operation)."""

    def update(self, entry: JournalEntry) -> str | None:
        """Record *entry*; return its previous status (``None`` when first seen)."""
        previous = self.statuses.get(entry.key)
        self.statuses[entry.key] = entry.status
        self.task_ids[entry.key] = entry.task_id
        final = self._final()
        # First sight is a new intent or an entry resumed from an earlier run: not a completion.
        if previous is not None and previous not in final and entry.status in final:
            self.eta.completed += 1
        return previous

    def _final(self) -> frozenset[str]:
        if self.download:
            return frozenset({"downloaded", "failed", "uncertain"})
        return _FINISHED | {"uncertain"}

    def count(self, event: Event) -> None:
        """Count a client event that concerns the whole batch."""
        if isinstance(event, ConcurrencyLimited):
            self.concurrency_limited += 1
        elif isinstance(event, Retrying):
            self.retries += 1
            # Every "too many requests" answer ends in a Retrying event (the shared cool-down
            # of a rate limiter, RateLimited, is emitted only when the client has one).
            if isinstance(event.error, RateLimitError) and not isinstance(
                event.error, ConcurrencyLimitError
            ):
                self.rate_limited += 1

    def _with(self, statuses: Iterable[str]) -> int:
        wanted = frozenset(statuses)
        return sum(1 for status in self.statuses.values() if status in wanted)

    def _failed_tasks(self) -> int:
        # A failed entry had a task only when the create was not refused.
        return sum(
            1
            for key, status in self.statuses.items()
            if status == "failed" and self.task_ids.get(key)
        )

    @property
    def created(self) -> int:
        """Items with a task on the server (including finished ones)."""
        return self._with(_CREATED) + self._failed_tasks()

    @property
    def finished(self) -> int:
        """Items whose task has finished (succeeded or failed); a refused create is not one."""
        return self._with(_SUCCEEDED) + self._failed_tasks()

    @property
    def downloaded(self) -> int:
        """Items whose video is on disk."""
        return self._with({"downloaded"})

    @property
    def failed(self) -> int:
        """Items that failed (task failed or create refused)."""
        return self._with({"failed"})

    @property
    def uncertain(self) -> int:
        """Items whose create may or may not have made a task."""
        return self._with({"uncertain"})

    @property
    def done(self) -> int:
        """Items that need nothing more in this run."""
        return self._with(self._final())

    def describe(self) -> str:
        """One line of counts, e.g. ``created 5 · finished 3 · downloaded 2 · failed 1``."""
        parts = [f"created {self.created}", f"finished {self.finished}"]
        if self.download:
            parts.append(f"downloaded {self.downloaded}")
        parts.append(f"failed {self.failed}")
        if self.uncertain:
            parts.append(f"uncertain {self.uncertain}")
        parts.append(f"rate-limited {self.rate_limited}")
        if self.concurrency_limited:
            parts.append(f"slot-limited {self.concurrency_limited}")
        if self.retries:
            parts.append(f"retries {self.retries}")
        return " · ".join(parts)
