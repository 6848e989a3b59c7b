"""Makespan under a task-slot limit vs the ideal ``ceil(N / S) * D``.

N tasks of fixed duration D (no queue time) run with S slots, enforced by both the emulator
(``max_active_tasks=S``, a create beyond it gets 429/1303) and the client
(``max_active_tasks=S``). The tasks are submitted with ``submit_many`` in chunks of S while a
streaming ``client.watch()`` tracks them; the makespan runs from the first submit to the last
finished task yielded.

A slot frees only when the client *sees* a task finish, so each wave pays the detection delay
(poll interval) plus the submit round trip; the policy is tight (checks every ``--interval``)
and what that costs in requests is reported. Run with and without the list endpoint, and a
third time with a client that is not told the limit (``max_active_tasks=None``): it learns it
from the first 1303 answers (issue 9: <= 1.2x then, against <= 1.05x when the limit is given).

Run: ``.venv/bin/python benchmarks/bench_makespan.py``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import anyio
from _common import API_KEY, make_client, print_grid, prompts, verdict

import kling_async as kling
from kling_async.events import Event, TaskPolled
from kling_async.testing import FakeKlingServer, Timeline

TARGET = 1.05
LEARNT_TARGET = 1.2
"""The makespan target when the client must learn the slot limit from 1303 answers."""


async def _one_run(
    *,
    tasks: int,
    slots: int,
    duration: float,
    interval: float,
    supports_list: bool,
    told: bool = True,
) -> dict[str, Any]:
    """One run; with *told* false the client is not given the limit and learns it."""
    policy = kling.PollPolicy(
        first_delay=duration,
        min_interval=interval,
        max_interval=interval,
        jitter=0.0,
        max_in_flight=slots,
    )
    timeline = Timeline(queue_seconds=0.0, processing_seconds=duration)
    async with FakeKlingServer(
        api_key=API_KEY, timeline=timeline, max_active_tasks=slots
    ) as server:
        async with make_client(
            server.url,
            supports_list=supports_list,
            poll=policy,
            max_active_tasks=slots if told else None,
        ) as client:
            requests = prompts(tasks, f"mk-{supports_list}-{told}")
            finished = 0
            scheduler_checks = 0

            def on_event(event: Event) -> None:
                nonlocal scheduler_checks
                if isinstance(event, TaskPolled):
                    scheduler_checks += 1

            client.events.add(on_event)
            async with client.watch() as results:

                async def feed() -> None:
                    for start in range(0, tasks, slots):
                        for task in await client.submit_many(requests[start : start + slots]):
                            results.add(task)
                    results.close()

                started = time.perf_counter()
                async with anyio.create_task_group() as group:
                    group.start_soon(feed)
                    async for _task in results:
                        finished += 1
                makespan = time.perf_counter() - started
        routes = server.stats.routes
        rejected = server.stats.codes[1303]
    ideal = math.ceil(tasks / slots) * duration
    return {
        "list": supports_list,
        "told": told,
        "target": TARGET if told else LEARNT_TARGET,
        "finished": finished,
        "makespan": makespan,
        "ideal": ideal,
        "ratio": makespan / ideal,
        "creates": routes["create"],
        "checks": routes["query"] + routes["list"],
        "checks_per_task": (routes["query"] + routes["list"]) / tasks,
        "rejected_1303": rejected,
        # Each scheduler check is one task seen (a list call sees many); the rest of the
        # queries come from submitters refreshing active tasks while they wait for a slot.
        "scheduler_task_checks": scheduler_checks,
        "submitter_refreshes": routes["query"] - (0 if supports_list else scheduler_checks),
    }


async def run(
    tasks: int = 60, slots: int = 10, duration: float = 0.5, interval: float = 0.01
) -> dict[str, Any]:
    """Run without and with the list endpoint, then with the limit learnt; return all three."""
    rows = [
        await _one_run(
            tasks=tasks,
            slots=slots,
            duration=duration,
            interval=interval,
            supports_list=supports_list,
            told=told,
        )
        for supports_list, told in ((False, True), (True, True), (False, False))
    ]
    return {
        "tasks": tasks,
        "slots": slots,
        "duration": duration,
        "interval": interval,
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse *argv*, run the benchmark, print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--duration", type=float, default=0.5, help="seconds per task")
    parser.add_argument("--interval", type=float, default=0.01, help="poll interval (s)")
    args = parser.parse_args(argv)
    # The learnt-limit run shrinks the pool at each 1303 and says so in a warning per step;
    # the table counts them, so they would only interleave with it.
    logging.getLogger("kling_async.slots").setLevel(logging.ERROR)
    result = asyncio.run(
        run(tasks=args.tasks, slots=args.slots, duration=args.duration, interval=args.interval)
    )
    print_grid(
        f"makespan: {result['tasks']} tasks x {result['duration']} s, {result['slots']} slots, "
        f"checks every {result['interval']} s after the first at {result['duration']} s",
        [
            "variant",
            "makespan s",
            "ideal s",
            "ratio",
            "creates",
            "requests",
            "req/task",
            "by waiting submitters",
            "1303",
            "target",
            "",
        ],
        [
            [
                "limit learnt from 1303"
                if not row["told"]
                else "list endpoint"
                if row["list"]
                else "one GET per check",
                row["makespan"],
                row["ideal"],
                f"{row['ratio']:.3f}x",
                row["creates"],
                row["checks"],
                row["checks_per_task"],
                row["submitter_refreshes"],
                row["rejected_1303"],
                f"<= {row['target']}x" + ("" if row["told"] else ", some 1303"),
                verdict(
                    row["ratio"] <= row["target"] and (not row["told"] or not row["rejected_1303"])
                ),
            ]
            for row in result["rows"]
        ],
    )
    return result


if __name__ == "__main__":
    main()
