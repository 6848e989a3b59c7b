"""The command line's PostgreSQL side: a batch worker, and the status of shared batches.

``kling-async batch prompts.jsonl -o out --journal postgresql://...`` runs one
[`BatchWorker`][kling_async.worker.BatchWorker]; start it on several hosts to scale out.
``kling-async status --journal postgresql://...`` prints each batch's progress from anywhere.
Kept apart from [`kling_async.cli`][kling_async.cli] so that module only dispatches on the journal's URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from .batch import BatchResult
from .client import KlingClient
from .journal_postgres import BatchStatus, PostgresJournal
from .models import TaskRequest
from .progress import batch_display
from .worker import BatchWorker

__all__ = ["format_status", "journal_status", "run_worker"]

_STATES = ("queued", "pending", "created", "succeed", "downloaded", "failed", "uncertain")


async def run_worker(
    client: KlingClient,
    items: Sequence[tuple[str, TaskRequest]],
    out_dir: Path,
    url: str,
    batch_name: str,
    *,
    lease: float = 30.0,
    timeout: float | None,
    concurrency: int,
    console: Console,
) -> BatchResult:
    """Run one worker of the batch *batch_name* in the journal at *url*; the whole batch's result.

    The progress display shows this worker's share: the items it created, adopted or downloaded.
    """
    async with client, await PostgresJournal.open(url, batch=batch_name) as journal:
        display = batch_display(console, len(items), title=f"worker {journal.owner}")
        client.events.add(display.event)
        with display:
            worker = BatchWorker(
                client,
                journal,
                out_dir,
                lease=lease,
                timeout=timeout,
                concurrency=concurrency,
                on_entry=display.entry,
            )
            return await worker.run(items)


async def journal_status(url: str, batch_name: str | None) -> list[BatchStatus]:
    """The status of *batch_name* (or of every batch) in the journal at *url*."""
    async with await PostgresJournal.open(url, batch=batch_name or "-") as journal:
        names = [batch_name] if batch_name else await journal.batches()
        return [await journal.for_batch(name).status() for name in names]


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_status(status: BatchStatus) -> list[str]:
    """Plain lines describing *status*: counts, workers, rate, ETA and the top failures.

    Examples:
        >>> s = BatchStatus("b", {"downloaded": 3, "queued": 1}, 1, 1, 6.0, ())
        >>> format_status(s)[:3]
        ['batch b: 3 of 4 finished', '  queued 1 · downloaded 3', '  1 worker(s) live, 1 item(s) leased']
    """
    counts = " · ".join(
        f"{state} {status.counts[state]}" for state in _STATES if status.counts.get(state)
    )
    lines = [
        f"batch {status.batch}: {status.finished} of {status.total} finished",
        f"  {counts or 'no items'}",
        f"  {status.workers} worker(s) live, {status.leased} item(s) leased",
    ]
    eta = status.eta_seconds
    if status.finished == status.total and status.total:
        lines.append("  done")
    elif eta is None:
        lines.append("  throughput: nothing finished recently; ETA unknown")
    else:
        lines.append(f"  throughput {status.per_minute:.1f}/min, ETA {_duration(eta)}")
    if status.failures:
        lines.append("  failures:")
        lines.extend(
            f"    {state:<9} {count:>5}  {reason or 'no reason given'}"
            for state, reason, count in status.failures
        )
    return lines
