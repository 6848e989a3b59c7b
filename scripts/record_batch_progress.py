"""Record the batch progress display as an SVG for the docs: ``python scripts/record_batch_progress.py``.

It runs a batch of 12 prompts against the in-process emulator, with the faults, task slots
and rate limit of ``kling-async demo``, drawing the same rich display the ``batch`` command
draws in a terminal, on a recording console. The console is a terminal that is not
interactive, so the live bar is drawn once, in its final state, below the lines printed while
the batch ran; then come the summary table and line. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

import kling_async as kling
from kling_async.batch import Batch, BatchResult
from kling_async.journal import InMemoryJournal
from kling_async.progress import batch_display, summary_table
from kling_async.testing import FakeKlingServer, Faults, Timeline

DEFAULT_SVG = Path(__file__).resolve().parent.parent / "docs" / "assets" / "batch-progress.svg"
PROMPTS = (
    "A red fox trotting through fresh snow at dawn",
    "Waves rolling onto a black sand beach, aerial view",
    "A paper boat drifting down a rainy city gutter",
    "Time-lapse of clouds over a mountain lake",
    "A cat watching goldfish in a bowl, close-up",
    "A forbidden scene (FAIL: the emulator rejects prompts containing FAIL)",
    "Neon signs reflecting in puddles at night",
    "A hot air balloon rising over vineyards",
    "Steam curling from a cup of coffee by a window",
    "A hummingbird hovering at a red flower, slow motion",
    "Autumn leaves swirling in a courtyard",
    "A lighthouse beam sweeping across a stormy sea",
)


async def run_batch(console: Console, out_dir: Path) -> BatchResult:
    """The batch, drawn on *console*."""
    server = FakeKlingServer(
        timeline=Timeline(queue_seconds=0.3, processing_seconds=1.0, jitter=0.45, seed=11),
        faults=Faults(rate=0.05, kinds=("500", "503", "drop_after_create"), seed=5),
        max_active_tasks=5,
        rate_limit=6.0,
        rate_burst=6,
    )
    async with server:
        client = kling.KlingClient(
            api_key=server.api_key,
            provider=kling.local_emulator(server.url),
            max_active_tasks=5,
            poll=kling.PollPolicy(first_delay=0.2, min_interval=0.2, max_interval=0.5),
            retry=kling.RetryPolicy(base=0.2, cap=1.0),
        )
        items = [
            (f"clip-{number:02d}", kling.TextToVideo(prompt=prompt))
            for number, prompt in enumerate(PROMPTS, start=1)
        ]
        console.print(f"$ kling-async batch prompts.txt -o {out_dir.name}", highlight=False)
        async with client, InMemoryJournal() as journal:
            display = batch_display(console, len(items))
            client.events.add(display.event)
            with display:
                result = await Batch(client, journal, out_dir, on_entry=display.entry).run(items)
    console.print(summary_table(result.entries))
    console.print(
        f"{result.succeeded} succeeded, {result.failed} failed, {result.uncertain} uncertain, "
        f"{result.incomplete} unfinished; files in {out_dir.name}",
        highlight=False,
    )
    return result


def record(svg: Path, *, width: int = 100) -> BatchResult:
    """Run the batch and save what the terminal showed to *svg*."""
    console = Console(
        file=io.StringIO(),  # only the recording is wanted
        record=True,
        force_terminal=True,
        force_interactive=False,
        width=width,
        color_system="truecolor",
    )
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(run_batch(console, Path(folder) / "videos"))
    svg.parent.mkdir(parents=True, exist_ok=True)
    console.save_svg(str(svg), title="kling-async batch")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_SVG, help="the SVG to write")
    args = parser.parse_args(argv)
    record(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
