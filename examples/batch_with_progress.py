"""Generate a batch of videos with a progress bar, resumably.

Every prompt is recorded in a SQLite journal *before* its create request is sent, together with
the ``external_task_id`` the create will carry. Run the script again after a crash (or Ctrl-C) and
it re-attaches to the tasks it already created instead of paying for them twice.

By default it starts the built-in emulator in-process, so it runs without an API key::

    python examples/batch_with_progress.py --out out/ --count 12

With ``--real`` it uses the real API and ``$COMETAPI_KEY``; give it your prompts with ``--prompts
FILE`` (one per line). Real videos cost money.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import kling_async as kling
from kling_async.events import Event, Retrying, TaskSubmitted
from kling_async.journal import JournalEntry, SqliteJournal
from kling_async.testing import FakeKlingServer, Timeline

SUBJECTS = ("a red fox", "a paper boat", "a hot-air balloon", "a lighthouse", "a koi pond")


def demo_prompts(count: int) -> list[str]:
    """*count* short prompts for the demo."""
    return [f"{SUBJECTS[i % len(SUBJECTS)]} at dawn, cinematic, shot {i + 1}" for i in range(count)]


@contextlib.asynccontextmanager
async def open_client(*, real: bool) -> AsyncIterator[kling.KlingClient]:
    """A client for the real API, or for a fresh emulator with 4 task slots per account.

    The emulator fails about one task in ten ("generation failed"), as the real service sometimes
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


async def attach(
    client: kling.KlingClient, journal: SqliteJournal, entry: JournalEntry
) -> kling.Task | None:
    """Return the task for a journal entry: re-attached if it exists, else newly submitted."""
    if entry.task_id is not None:  # created in an earlier run: just look at it again
        task = await client.get_task(entry.task_id, entry.kind)
        client.adopt(task)  # an unfinished task holds one of the account's task slots
        return task
    # "pending" or "uncertain": a create may have reached the server before we crashed.
    found = await client.find_by_external_id(entry.external_task_id, entry.kind)
    if found is not None:
        client.adopt(found)
    else:
        request = kling.TextToVideo(**json.loads(entry.request_json))
        try:
            found = await client.submit(request, external_task_id=entry.external_task_id)
        except kling.SubmitUncertainError as exc:
            await journal.record_status(entry.key, "uncertain", error=str(exc))
            return None
        except kling.KlingError as exc:
            await journal.record_status(entry.key, "failed", error=str(exc))
            return None
    await journal.record_created(entry.key, found.id)
    return found


async def run_batch(
    client: kling.KlingClient, prompts: Sequence[str], out_dir: str | Path, journal_path: str | Path
) -> dict[str, str]:
    """Run (or resume) the batch; return ``{key: status}`` as the journal has it at the end."""
    out = Path(out_dir)  # must exist
    async with await SqliteJournal.open(journal_path) as journal:
        # 1. Record every intent first; a key already in the journal keeps its external id.
        for number, prompt in enumerate(prompts, start=1):
            body = {"prompt": prompt, "duration": "5", "aspect_ratio": "16:9"}
            await journal.record_intent(
                f"line-{number}",
                external_task_id=f"batch-demo-{number:05d}",
                kind="text2video",
                request_json=json.dumps(body),
            )
        entries = {entry.key: entry for entry in await journal.entries()}
        todo = [e for e in entries.values() if e.status not in ("downloaded", "failed")]
        keys_by_task: dict[str, str] = {}

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns) as progress:
            done_bar = progress.add_task("finished", total=len(todo))
            retries = 0

            def on_event(event: Event) -> None:
                nonlocal retries
                if isinstance(event, TaskSubmitted):
                    progress.console.log(f"submitted {event.task.id}")
                elif isinstance(event, Retrying):
                    retries += 1

            client.events.add(on_event)
            async with client.watch(timeout=3600) as results:

                async def start(entry: JournalEntry) -> None:
                    task = await attach(client, journal, entry)
                    if task is None:
                        progress.advance(done_bar)
                        return
                    keys_by_task[task.id] = entry.key
                    results.add(task)

                async with anyio.create_task_group() as group:
                    for entry in todo:
                        group.start_soon(start, entry)
                results.close()

                async for task in results:
                    key = keys_by_task[task.id]
                    if task.failed:
                        await journal.record_status(key, "failed", error=task.status_msg)
                    else:
                        await journal.record_status(key, "succeed")
                        path = await client.download(task, out)
                        await journal.record_download(key, str(path))
                    progress.advance(done_bar)
            progress.console.log(f"retries: {retries}")
        return {entry.key: entry.status for entry in await journal.entries()}


async def run(
    out_dir: str | Path,
    *,
    prompts: Sequence[str] | None = None,
    count: int = 12,
    real: bool = False,
    journal_path: str | Path | None = None,
) -> dict[str, str]:
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
    statuses = asyncio.run(
        run(args.out, prompts=prompts, count=args.count, real=args.real, journal_path=args.journal)
    )
    summary = {
        status: list(statuses.values()).count(status) for status in sorted(set(statuses.values()))
    }
    print("summary:", ", ".join(f"{n} {status}" for status, n in summary.items()))
    return 0 if set(statuses.values()) <= {"downloaded"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
