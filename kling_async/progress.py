"""Progress displays for the command line: a rich progress bar, or plain lines when piped.

A batch display is fed from two sides: :class:`~kling_async.batch.Batch` hands it every journal
entry as it changes (``on_entry``), which gives exact created / finished / downloaded counts even
for entries resumed from an earlier run (those never produce a client event), and
``client.events`` hands it the client's events, which give the rate-limit, 1303 and retry counts.

When the output is not a terminal, the displays write one plain line per event of interest
(created, finished, downloaded, failed, uncertain, rate-limited) with no ANSI codes, so logs and
CI output stay readable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, TypeVar

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .errors import ConcurrencyLimitError, RateLimitError
from .events import (
    ConcurrencyLimited,
    Event,
    RateLimited,
    Retrying,
    TaskFinished,
    TaskPolled,
    TaskSubmitted,
)
from .journal import JournalEntry

__all__ = [
    "BatchDisplay",
    "BatchTally",
    "Display",
    "PlainBatchProgress",
    "PlainTaskProgress",
    "RichBatchProgress",
    "RichTaskProgress",
    "TaskDisplay",
    "batch_display",
    "summary_table",
    "task_display",
]

_SUCCEEDED = frozenset({"succeed", "downloaded"})
_FINISHED = _SUCCEEDED | {"failed"}
_CREATED = frozenset({"created", "succeed", "downloaded"})


class BatchTally:
    """Counts of a batch's entries by what has happened to them, plus client event counts.

    Args:
        total: how many items the batch has.
        download: whether the batch downloads (then an item is done once downloaded).
    """

    def __init__(self, total: int, *, download: bool = True) -> None:
        self.total = total
        self.download = download
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
        return previous

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
        final = (
            {"downloaded", "failed", "uncertain"} if self.download else _FINISHED | {"uncertain"}
        )
        return self._with(final)

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


class Display(Protocol):
    """What every display offers: it shows client events, inside a ``with`` block."""

    def event(self, event: Event) -> None:
        """Show a client event (pass to ``client.events.add``)."""
        ...

    def __enter__(self: _D) -> _D:
        """Start displaying."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop displaying."""
        ...


_D = TypeVar("_D", bound=Display)


class BatchDisplay(Display, Protocol):
    """What :mod:`kling_async.cli` needs from a batch progress display."""

    tally: BatchTally

    def entry(self, entry: JournalEntry) -> None:
        """Show that *entry* was loaded or changed (pass as ``Batch(on_entry=...)``)."""
        ...


class _Live:
    """Runs a rich :class:`~rich.progress.Progress` for the length of a ``with`` block."""

    _progress: Progress

    def __enter__(self: _L) -> _L:
        """Start the live display."""
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Draw the final state and stop the live display."""
        self._finish()
        self._progress.stop()

    def _finish(self) -> None:
        """Bring the display up to date before it stops."""


_L = TypeVar("_L", bound=_Live)


class _BarWithCounts(Progress):
    """A progress bar with the batch's counts on a line of their own (they do not fit beside it)."""

    def __init__(self, *columns: ProgressColumn, counts: Callable[[], str], **options: Any) -> None:
        # Set first: the base class renders once while it is being built.
        self._counts = counts
        super().__init__(*columns, **options)

    def get_renderables(self) -> Iterable[RenderableType]:
        """The bar, then the counts."""
        yield self.make_tasks_table(self.tasks)
        yield Text(f"  {self._counts()}", style="dim")


class RichBatchProgress(_Live):
    """One rich progress bar for a batch: done/total, counts, elapsed time and ETA.

    Args:
        console: where to draw (a terminal).
        total: how many items the batch has.
        title: the bar's label.
        download: whether the batch downloads its results.
    """

    def __init__(
        self, console: Console, total: int, *, title: str = "batch", download: bool = True
    ) -> None:
        self.tally = BatchTally(total, download=download)
        self._progress = _BarWithCounts(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            counts=self.tally.describe,
        )
        self._task: TaskID = self._progress.add_task(title, total=total)

    def _finish(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        self._progress.update(self._task, completed=self.tally.done)

    def entry(self, entry: JournalEntry) -> None:
        """See :meth:`BatchDisplay.entry`."""
        previous = self.tally.update(entry)
        if entry.status in ("failed", "uncertain") and previous != entry.status:
            reason = f": {entry.error}" if entry.error else ""
            self._progress.console.print(
                Text.assemble((entry.status, "red"), f" {entry.key}{reason}")
            )
        self._refresh()

    def event(self, event: Event) -> None:
        """See :meth:`BatchDisplay.event`."""
        self.tally.count(event)
        if isinstance(event, RateLimited | ConcurrencyLimited | Retrying):
            self._refresh()


class PlainBatchProgress:
    """Plain log lines for a batch, for output that is not a terminal (no ANSI codes).

    Args:
        stream: where to write the lines.
        total: how many items the batch has.
        download: whether the batch downloads its results.
    """

    def __init__(self, stream: IO[str], total: int, *, download: bool = True) -> None:
        self.tally = BatchTally(total, download=download)
        self._stream = stream

    def __enter__(self) -> PlainBatchProgress:
        """Write the opening line."""
        self._line(f"batch: {self.tally.total} item(s)")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Write the closing counts."""
        self._line(f"batch: {self.tally.done}/{self.tally.total} done; {self.tally.describe()}")

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def entry(self, entry: JournalEntry) -> None:
        """See :meth:`BatchDisplay.entry`."""
        previous = self.tally.update(entry)
        if previous is None or previous == entry.status:
            # First sight (a new intent, or an entry resumed from an earlier run): not an event.
            return
        status = entry.status
        if status == "created":
            self._line(f"created {entry.key} task {entry.task_id}")
        elif status == "succeed" and previous != "downloaded":
            self._line(f"finished {entry.key} succeed")
        elif status == "failed":
            self._line(f"failed {entry.key}: {entry.error or 'failed'}")
        elif status == "downloaded":
            self._line(f"downloaded {entry.key} -> {entry.file_path}")
        elif status == "uncertain":
            self._line(f"uncertain {entry.key}: {entry.error or 'create outcome unknown'}")

    def event(self, event: Event) -> None:
        """See :meth:`BatchDisplay.event`."""
        self.tally.count(event)
        if isinstance(event, RateLimited | ConcurrencyLimited):
            self._line(str(_task_event_text(event)))


def batch_display(
    console: Console, total: int, *, title: str = "batch", download: bool = True
) -> BatchDisplay:
    """A rich progress bar when *console* is a terminal, plain lines otherwise.

    Args:
        console: the console to write to (its ``file`` receives plain lines).
        total: how many items the batch has.
        title: the bar's label.
        download: whether the batch downloads its results.
    """
    if console.is_terminal:
        return RichBatchProgress(console, total, title=title, download=download)
    return PlainBatchProgress(console.file, total, download=download)


class TaskDisplay(Display, Protocol):
    """What ``kling-async generate`` needs from a single-task display."""

    def note(self, text: str) -> None:
        """Show a step that is not a client event (downloading, saved)."""
        ...


def _task_event_text(event: Event) -> str | None:
    if isinstance(event, TaskSubmitted):
        return f"created task {event.task.id} ({event.task.status.value})"
    if isinstance(event, TaskPolled):
        return f"task {event.task.id}: {event.task.status.value}"
    if isinstance(event, TaskFinished):
        task = event.task
        reason = f": {task.status_msg}" if task.failed and task.status_msg else ""
        return f"task {task.id} finished: {task.status.value}{reason}"
    if isinstance(event, RateLimited):
        return f"rate-limited: pausing {event.delay:.1f}s"
    if isinstance(event, Retrying):
        return f"retrying {event.operation} in {event.delay:.1f}s ({type(event.error).__name__})"
    if isinstance(event, ConcurrencyLimited):
        return f"too many tasks running: using at most {event.limit} slot(s)"
    return None


class _TaskEvents:
    """Shows each client event of interest as a note (see :func:`_task_event_text`)."""

    def note(self, text: str) -> None:
        """Show *text*."""
        raise NotImplementedError

    def event(self, event: Event) -> None:
        """See :meth:`TaskDisplay.event`."""
        text = _task_event_text(event)
        if text is not None:
            self.note(text)


class RichTaskProgress(_TaskEvents, _Live):
    """A spinner with the task's latest state, for a terminal.

    Args:
        console: where to draw.
        title: what is being made.
    """

    def __init__(self, console: Console, title: str) -> None:
        self._title = title
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._progress.add_task(title, total=None, detail="submitting")

    def note(self, text: str) -> None:
        """See :meth:`TaskDisplay.note`."""
        self._progress.update(self._task, detail=text)


class PlainTaskProgress(_TaskEvents):
    """Plain log lines for one task: one line per change of state.

    Args:
        stream: where to write the lines.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._last: str | None = None

    def __enter__(self) -> PlainTaskProgress:
        """Nothing to start."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Nothing to stop."""

    def note(self, text: str) -> None:
        """See :meth:`TaskDisplay.note`; repeated lines (polls without news) are dropped."""
        if text == self._last:
            return
        self._last = text
        self._stream.write(text + "\n")
        self._stream.flush()


def task_display(console: Console, title: str) -> TaskDisplay:
    """A spinner when *console* is a terminal, plain lines otherwise.

    Args:
        console: the console to write to.
        title: what is being made.
    """
    if console.is_terminal:
        return RichTaskProgress(console, title)
    return PlainTaskProgress(console.file)


def summary_table(entries: Iterable[JournalEntry], *, title: str = "Batch summary") -> Table:
    """A table of every entry: key, task id, status and file (or why it has none).

    Args:
        entries: the batch's final entries.
        title: the table's title.
    """
    table = Table(title=title)
    table.add_column("key", no_wrap=True)
    table.add_column("task id", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("file / reason")
    styles = {"downloaded": "green", "succeed": "green", "failed": "red", "uncertain": "yellow"}
    counts: Counter[str] = Counter()
    for entry in entries:
        counts[entry.status] += 1
        detail = Path(entry.file_path).name if entry.file_path else (entry.error or "")
        # Text cells: keys and server messages are data, never rich markup.
        table.add_row(
            Text(entry.key),
            Text(entry.task_id or "-"),
            Text(entry.status, style=styles.get(entry.status, "")),
            Text(detail),
        )
    table.caption = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
    return table
