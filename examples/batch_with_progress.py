"""Generate a batch of videos with a progress bar, resumably, with ``kling_async.batch.Batch``.

``Batch`` records each prompt in a SQLite journal *before* its create request is sent, with the
``external_task_id`` the create carries. Run the script again after a crash (or Ctrl-C) and it
re-attaches to the tasks it already created instead of paying for them twice.

By default it starts the built-in emulator in-process, so it runs without an API key::

    python examples/batch_with_progress.py --out out/ --count 12

With ``--real`` it uses the real API and ``$COMETAPI_KEY``; give it your prompts with ``--prompts
FILE`` (one per line). Real videos cost money. ``kling-async batch`` is the same as a command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from rich.console import Console

import kling_async as kling
from kling_async.batch import Batch, BatchResult
from kling_async.journal import SqliteJournal
from kling_async.progress import batch_display, summary_table
from kling_async.testing import FakeKlingServer, Timeline

SUBJECTS = ("a red fox", "a paper boat", "a hot-air balloon", "a lighthouse", "a koi pond")


def demo_prompts(count: int) -> list[str]:
    """*count* short prompts for the demo."""
    return [f"{SUBJECTS[i % len(SUBJECTS)]} at dawn, cinematic, shot {i + 1}" for i in range(count)]


@contextlib.asynccontextmanager
async def open_client(*, real: bool) -> AsyncIterator[kling.KlingClient]:
    """A client for the real API, or for a fresh emulator with 4 task slots per account.

    The emulator fails one task in ten ("generation failed"), as the real service sometimes
    does; those end up ``failed`` in the journal.
    """
    if real:
        async with kling.KlingClient(max_active_tasks=4) as client:
            yield client
        return
    timeline = Timeline(queue_seconds=0.2, processing_seconds=0.6, jitter=0.5, fail_rate=0.1)
    async with (
        FakeKlingServer(timeline=timeline, max_active_tasks=4) as server,
        kling.KlingClient(
            api_key=server.api_key,
            provider=kling.local_emulator(server.url),
            max_active_tasks=4,
            poll=kling.PollPolicy(first_delay=0.2, min_interval=0.2, max_interval=1.0),
        ) as client,
    ):
        yield client


async def run_batch(
    client: kling.KlingClient,
    prompts: Sequence[str],
    out_dir: str | Path,
    journal_path: str | Path,
    *,
    console: Console | None = None,
) -> BatchResult:
    """Run (or resume) the batch: a video per prompt, saved as ``OUT/line-NNNN.mp4``."""
    # Keys name the journal entries and the files; from the line number, they stay the same
    # when the script runs again, which is what lets it resume.
    items = [
        (f"line-{number:04d}", kling.TextToVideo(prompt=prompt, aspect_ratio="16:9"))
        for number, prompt in enumerate(prompts, start=1)
    ]
    console = console or Console()
    async with await SqliteJournal.open(journal_path) as journal:
        display = batch_display(console, len(items))
        client.events.add(display.event)  # rate limits, retries and slot waits
        with display:
            batch = Batch(client, journal, Path(out_dir), on_entry=display.entry)
            result = await batch.run(items)
    console.print(summary_table(result.entries))
    return result


async def run(
    out_dir: str | Path,
    *,
    prompts: Sequence[str] | None = None,
    count: int = 12,
    real: bool = False,
    journal_path: str | Path | None = None,
) -> BatchResult:
    """Open a client and run the batch; the journal defaults to ``<out_dir>/batch.journal``."""
    prompts = list(prompts) if prompts is not None else demo_prompts(count)
    journal_path = journal_path or Path(out_dir) / "batch.journal"
    async with open_client(real=real) as client:
        return await run_batch(client, prompts, out_dir, journal_path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 when any video failed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for videos and the journal")
    parser.add_argument("--count", type=int, default=12, help="demo prompts to generate")
    parser.add_argument("--prompts", type=Path, help="a file with one prompt per line")
    parser.add_argument("--journal", type=Path, help="journal file (default: OUT/batch.journal)")
    parser.add_argument("--real", action="store_true", help="use the real API, not the emulator")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    prompts = None
    if args.prompts is not None:
        lines = args.prompts.read_text(encoding="utf-8").splitlines()
        prompts = [line.strip() for line in lines if line.strip()]
    try:
        result = asyncio.run(
            run(
                args.out,
                prompts=prompts,
                count=args.count,
                real=args.real,
                journal_path=args.journal,
            )
        )
    except kling.KlingError as exc:  # bad credentials, a changed input file: one line
        print(f"error: {exc}")
        return 1
    print(
        f"summary: {result.succeeded} downloaded, {result.failed} failed, "
        f"{result.uncertain} uncertain, {result.incomplete} unfinished"
    )
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
