"""Requests per finished task and time-to-detect: the scheduler vs a naive fixed 10 s poll loop.

Realistic durations are compressed in time by ``--scale`` (default 1/50): each task takes
U(5, 30) s in the queue plus U(55, 270) s generating (60-300 s in all, drawn from a seeded
generator by the emulator's ``processing_seconds`` callable), so a 300 s task lasts 6 s here.
At 1/100 the milliseconds a burst of 200 requests queues at the in-process emulator already
count as seconds of "equivalent" latency and stretch the naive loop's period.

Compared, each against a fresh emulator in this process with N tasks:

* **baseline**: one coroutine per task that sleeps a fixed 10 s (scaled) and then GETs the task,
  until it has finished (the naive approach);
* **library**: ``client.watch(tasks)`` with :class:`PollPolicy` times multiplied by the scale:
  the default policy, and a "tuned" one that uses the known durations (first check at 55 s,
  then every 10 s). Each is run with the list endpoint (batched checks, as Kling's own API
  allows), without it (one GET per check, as on CometAPI), and reading tasks by id with
  Kling's new-standard ``GET /tasks?task_ids=`` (20 per request, no list route needed).

Detection latency is the time the caller saw the finished task minus the emulator's recorded
finish time, divided by the scale ("equivalent seconds"). Requests are counted by the emulator
(status queries plus list calls; creates excluded).

Run: ``.venv/bin/python benchmarks/bench_requests_per_task.py``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import anyio
import attrs
from _common import API_KEY, make_client, percentile, print_grid, prompts, scaled_policy, verdict

import kling_async as kling
from kling_async.testing import FakeKlingServer, FakeTask, Timeline

TARGET_RATIO = 20.0
BASELINE_INTERVAL = 10.0
"""The naive loop's fixed poll interval, in real (unscaled) seconds."""


TUNED = kling.PollPolicy(first_delay=55.0, min_interval=10.0, max_interval=10.0, jitter=0.0)
"""Uses what we know of the durations: nothing finishes before ~60 s, then check every 10 s.

No jitter: tasks submitted together then fall due together, so with a list endpoint one
round of checks is one batch (jitter spreads them into many small batches)."""

TUNED_8S = attrs.evolve(TUNED, min_interval=8.0, max_interval=8.0)
"""The same every 8 s: buys back the p95 lost to list-call latency and split batches."""


def _duration_source(scale: float, seed: int) -> Any:
    rng = random.Random(seed)

    def draw(_task: FakeTask) -> float:
        # The whole life (queue + generation) goes into processing: only the finish time matters.
        return (rng.uniform(5.0, 30.0) + rng.uniform(55.0, 270.0)) * scale

    return draw


async def _one_run(
    name: str,
    *,
    tasks: int,
    scale: float,
    seed: int,
    policy: kling.PollPolicy | None,
    supports_list: bool,
    api_style: kling.ApiStyle = kling.ApiStyle.LEGACY,
) -> dict[str, Any]:
    """Run one strategy (``policy=None``: the naive loop) on a fresh emulator."""
    timeline = Timeline(queue_seconds=0.0, processing_seconds=_duration_source(scale, seed))
    async with FakeKlingServer(api_key=API_KEY, timeline=timeline, seed=seed) as server:
        seen_at: dict[str, float] = {}
        async with make_client(
            server.url, supports_list=supports_list, poll=policy, api_style=api_style
        ) as client:
            created = await client.submit_many(prompts(tasks, f"rpt-{name}"), concurrency=32)
            before = server.stats.routes["query"] + server.stats.routes["list"]
            if policy is None:
                interval = BASELINE_INTERVAL * scale

                async def naive(task: kling.Task) -> None:
                    while True:
                        await anyio.sleep(interval)
                        current = await client.get_task(task)
                        if current.is_finished:
                            seen_at[task.id] = time.monotonic()
                            return

                async with anyio.create_task_group() as group:
                    for task in created:
                        group.start_soon(naive, task)
            else:
                async with client.watch(created) as results:
                    async for task in results:
                        seen_at[task.id] = time.monotonic()
            requests = server.stats.routes["query"] + server.stats.routes["list"] - before
        # The emulator's clock is time.monotonic, the same scale as seen_at.
        latencies = [
            (seen_at[task.id] - server.tasks[task.id].finished_at) / scale for task in created
        ]
    return {
        "name": name,
        "requests": requests,
        "requests_per_task": requests / tasks,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "max": max(latencies),
    }


async def run(tasks: int = 200, scale: float = 0.02, seed: int = 7) -> dict[str, Any]:
    """Run the baseline and the library variants; return their figures and the ratios."""
    default = scaled_policy(kling.PollPolicy(), scale)
    tuned = scaled_policy(TUNED, scale)
    tuned_8s = scaled_policy(TUNED_8S, scale)
    legacy, by_id = kling.ApiStyle.LEGACY, kling.ApiStyle.STANDARD
    variants: list[tuple[str, kling.PollPolicy | None, bool, kling.ApiStyle]] = [
        ("naive fixed 10 s loop", None, False, legacy),
        ("default policy, no list", default, False, legacy),
        ("default policy, list", default, True, legacy),
        ("default policy, by id (new API)", default, False, by_id),
        ("tuned policy, no list", tuned, False, legacy),
        ("tuned policy, list", tuned, True, legacy),
        ("tuned policy, by id (new API)", tuned, False, by_id),
        ("tuned 8 s policy, list", tuned_8s, True, legacy),
    ]
    rows = []
    for name, policy, supports_list, api_style in variants:
        rows.append(
            await _one_run(
                name,
                tasks=tasks,
                scale=scale,
                seed=seed,
                policy=policy,
                supports_list=supports_list,
                api_style=api_style,
            )
        )
    baseline = rows[0]
    for row in rows:
        row["ratio"] = baseline["requests"] / row["requests"] if row["requests"] else float("inf")
        row["p95_ok"] = row["p95"] <= baseline["p95"]
        row["met"] = row["ratio"] >= TARGET_RATIO and row["p95_ok"]
    return {"tasks": tasks, "scale": scale, "rows": rows}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse *argv*, run the benchmark, print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--scale", type=float, default=0.02, help="time compression factor")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    result = asyncio.run(run(tasks=args.tasks, scale=args.scale, seed=args.seed))
    print_grid(
        f"requests per finished task, {result['tasks']} tasks of 60-300 s "
        f"(time x{result['scale']:g}; latencies in equivalent seconds)",
        [
            "strategy",
            "requests",
            "req/task",
            "p50 s",
            "p95 s",
            "fewer req",
            f">={TARGET_RATIO:g}x@p95",
        ],
        [
            [
                row["name"],
                row["requests"],
                row["requests_per_task"],
                row["p50"],
                row["p95"],
                f"{row['ratio']:.1f}x",
                "-" if index == 0 else verdict(row["met"]),
            ]
            for index, row in enumerate(result["rows"])
        ],
    )
    return result


if __name__ == "__main__":
    main()
