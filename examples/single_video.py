"""Generate one video and download it.

By default this starts the built-in emulator in-process, so it runs without an API key::

    python examples/single_video.py --out out/

With ``--real`` it talks to the real API instead, using ``$COMETAPI_KEY``. A real video costs
money and takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import kling_async as kling
from kling_async.testing import FakeKlingServer, Timeline

PROMPT = "A lighthouse on a cliff at sunset, waves crashing, slow aerial shot"


@contextlib.asynccontextmanager
async def open_client(*, real: bool) -> AsyncIterator[kling.KlingClient]:
    """A client for the real API (credentials from the environment) or for a fresh emulator."""
    if real:
        async with kling.KlingClient() as client:
            yield client
        return
    # Emulated tasks take about a second; poll a little faster than the real-world default.
    timeline = Timeline(queue_seconds=0.2, processing_seconds=0.8)
    async with (
        FakeKlingServer(timeline=timeline) as server,
        kling.KlingClient(
            api_key=server.api_key,
            provider=kling.local_emulator(server.url),
            poll=kling.PollPolicy(first_delay=0.2, min_interval=0.2, max_interval=1.0),
        ) as client,
    ):
        yield client


async def run(out_dir: str | Path, *, prompt: str = PROMPT, real: bool = False) -> Path:
    """Submit *prompt*, wait for the video and download it into *out_dir*; return the file."""
    async with open_client(real=real) as client:
        task = await client.text_to_video(prompt, duration="5", aspect_ratio="16:9", mode="std")
        print(f"submitted task {task.id} (external id {task.external_task_id})")
        done = await client.wait(task, timeout=1800)
        path = await client.download(done, out_dir)
        print(f"task {done.id} {done.status.value}: {path} ({path.stat().st_size} bytes)")
        return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the video (default: out)")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--real", action="store_true", help="use the real API, not the emulator")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(run(args.out, prompt=args.prompt, real=args.real))
    except kling.KlingError as exc:
        print(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
