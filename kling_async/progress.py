"""Progress displays for the command line: a rich progress bar, or plain lines when piped.

A batch display is fed from two sides: [`Batch`][kling_async.batch.Batch] hands it every journal
entry as it changes (``on_entry``), which gives exact created / finished / downloaded counts even
for entries resumed from an earlier run (those never produce a client event), and
``client.events`` hands it the client's events, which give the rate-limit, 1303 and retry counts.

When the output is not a terminal, the displays write one plain line per event of interest
(created, finished, downloaded, failed, uncertain, rate-limited) with no ANSI codes, so logs and
CI output stay readable.

The counts behind the displays ([`BatchTally`][kling_async.progress.BatchTally],
[`EtaEstimate`][kling_async.progress.EtaEstimate]) live in the private ``_batch_tally``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import timedelta
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
)
from rich.table import Table
from rich.text import Text

from ._batch_tally import BatchTally, EtaEstimate
from ._closing import Scoped
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
    "EtaEstimate",
    "PlainBatchProgress",
    "PlainTaskProgress",
    "RichBatchProgress",
    "RichTaskProgress",
    "TaskDisplay",
    "batch_display",
    "summary_table",
    "task_display",
]


class _EtaColumn(ProgressColumn):
    """``ETA h:mm:ss`` from an [`EtaEstimate`][kling_async.progress.EtaEstimate], ``ETA -:--:--`` until it has one."""

    def __init__(self, tally: BatchTally) -> None:
        self._tally = tally
        super().__init__()

    def render(self, task: Any) -> Text:
        """The estimate for what is left of *task*."""
        seconds = self._tally.eta.seconds_left(self._tally.total - self._tally.done)
        if seconds is None:
            return Text("ETA -:--:--", style="progress.remaining")
        return Text(f"ETA {timedelta(seconds=round(seconds))}", style="progress.remaining")


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
    """What [`kling_async.cli`][kling_async.cli] needs from a batch progress display."""

    tally: BatchTally

    def entry(self, entry: JournalEntry) -> None:
        """Show that *entry* was loaded or changed (pass as ``Batch(on_entry=...)``)."""
        ...


class _Live(Scoped):
    """Runs a rich ``Progress`` for the length of a ``with`` block."""

    _progress: Progress

    def _enter(self) -> None:
        self._progress.start()

    def _exit(self) -> None:
        # The final state is drawn before the live display stops.
        self._finish()
        self._progress.stop()

    def _finish(self) -> None:
        """Bring the display up to date before it stops."""


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
        eta: the time-left estimate (tests pass one with their own clock).
    """

    def __init__(
        self,
        console: Console,
        total: int,
        *,
        title: str = "batch",
        download: bool = True,
        eta: EtaEstimate | None = None,
    ) -> None:
        self.tally = BatchTally(total, download=download, eta=eta)
        self._progress = _BarWithCounts(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            # Not rich's TimeRemainingColumn: its speed comes from the last seconds of updates,
            # so resumed items and bursts of completions made it promise seconds for minutes.
            _EtaColumn(self.tally),
            console=console,
            counts=self.tally.describe,
        )
        self._task: TaskID = self._progress.add_task(title, total=total)

    def _finish(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        self._progress.update(self._task, completed=self.tally.done)

    def entry(self, entry: JournalEntry) -> None:
        """See [`BatchDisplay.entry`][kling_async.progress.BatchDisplay.entry]."""
        previous = self.tally.update(entry)
        if entry.status in ("failed", "uncertain") and previous != entry.status:
            reason = f": {entry.error}" if entry.error else ""
            self._progress.console.print(
                Text.assemble((entry.status, "red"), f" {entry.key}{reason}")
            )
        self._refresh()

    def event(self, event: Event) -> None:
        """See [`BatchDisplay.event`][kling_async.progress.Display.event]."""
        self.tally.count(event)
        if isinstance(event, RateLimited | ConcurrencyLimited | Retrying):
            self._refresh()


class PlainBatchProgress(Scoped):
    """Plain log lines for a batch, for output that is not a terminal (no ANSI codes).

    Args:
        stream: where to write the lines.
        total: how many items the batch has.
        download: whether the batch downloads its results.
    """

    def __init__(self, stream: IO[str], total: int, *, download: bool = True) -> None:
        self.tally = BatchTally(total, download=download)
        self._stream = stream

    def _enter(self) -> None:
        self._line(f"batch: {self.tally.total} item(s)")

    def _exit(self) -> None:
        self._line(f"batch: {self.tally.done}/{self.tally.total} done; {self.tally.describe()}")

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def entry(self, entry: JournalEntry) -> None:
        """See [`BatchDisplay.entry`][kling_async.progress.BatchDisplay.entry]."""
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
        """See [`BatchDisplay.event`][kling_async.progress.Display.event]."""
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
    """Shows each client event of interest as a note (see ``_task_event_text``)."""

    def note(self, text: str) -> None:
        """Show *text*."""
        raise NotImplementedError

    def event(self, event: Event) -> None:
        """See [`TaskDisplay.event`][kling_async.progress.Display.event]."""
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
        """See [`TaskDisplay.note`][kling_async.progress.TaskDisplay.note]."""
        self._progress.update(self._task, detail=text)


class PlainTaskProgress(_TaskEvents, Scoped):
    """Plain log lines for one task: one line per change of state.

    Args:
        stream: where to write the lines.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._last: str | None = None

    def note(self, text: str) -> None:
        """See [`TaskDisplay.note`][kling_async.progress.TaskDisplay.note]; repeated lines (polls without news) are dropped."""
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
