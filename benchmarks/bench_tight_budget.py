"""When the rate budget cannot pay for every check: 500 tasks at 20 requests/s, on virtual time.

500 tasks of U(60, 300) s tracked at once, one GET per check (CometAPI), every check through
one shared :class:`~kling_async.limiter.TokenBucketLimiter` at 20 requests/s (the client's
default): checking each task every ~10 s would need 50 requests/s. What the default
``PollPolicy()`` does then (the scheduler knows the rate, as ``KlingClient.watch`` tells it: the
first checks of the 500 tasks spread over the 25 s one round of them takes, ahead of the
window, instead of all falling due at once; then due checks queue at the limiter in the order
they fell due, so every task's gap stretches alike) against the naive loop (one coroutine per task: ``sleep(10 s)``, then
a GET through the same limiter). Time is a :class:`~kling_async.testing.clock.FakeClock`, so the
figures are exact and independent of the machine; the "server" is a function of the clock.

Run: ``.venv/bin/python benchmarks/bench_tight_budget.py``  (a few seconds)
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from typing import Any

import anyio
from _common import percentile, print_grid

from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.limiter import RateLimit, TokenBucketLimiter
from kling_async.models import Task, TaskStatus
from kling_async.scheduler import PollScheduler
from kling_async.testing.clock import FakeClock


def _task(task_id: str, status: TaskStatus) -> Task:
    return Task(id=task_id, kind=TEXT_TO_VIDEO, status=status, raw_status=status.value)


async def _one(strategy: str, tasks: int, rate: float, seed: int) -> dict[str, Any]:
    clock = FakeClock()
    rng = random.Random(seed)
    finish_at = {f"t{i}": rng.uniform(60, 300) for i in range(tasks)}
    limiter = TokenBucketLimiter(RateLimit(rate, burst=int(2 * rate)), clock=clock)
    requests = 0

    async def fetch(task: Task) -> Task:
        nonlocal requests
        await limiter.acquire()
        requests += 1
        done = clock.now() >= finish_at[task.id]
        return _task(task.id, TaskStatus.SUCCEED if done else TaskStatus.PROCESSING)

    seen: dict[str, float] = {}
    async with clock.autojump():
        if strategy == "naive":

            async def naive(task_id: str) -> None:
                while True:
                    await clock.sleep(10)
                    if (await fetch(_task(task_id, TaskStatus.SUBMITTED))).is_finished:
                        seen[task_id] = clock.now()
                        return

            async with anyio.create_task_group() as group:
                for task_id in finish_at:
                    group.start_soon(naive, task_id)
        else:
            # The client hands its scheduler the rate of its limiter, as here.
            scheduler = PollScheduler(fetch, clock=clock, rng=random.Random(seed), rate=rate)
            for task_id in finish_at:
                scheduler.add(_task(task_id, TaskStatus.SUBMITTED))
            scheduler.close()
            async with anyio.create_task_group() as group:
                group.start_soon(scheduler.run)
                async for task in scheduler:
                    seen[task.id] = clock.now()
    latencies = [seen[task_id] - finish_at[task_id] for task_id in finish_at]
    return {
        "name": strategy,
        "requests_per_task": requests / tasks,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "max": max(latencies),
        "makespan": clock.now(),
    }


UNLIMITED = 1e6
"""A rate no run reaches: the same comparison with budget to spare, exact and noise-free."""


async def run(tasks: int = 500, rate: float = 20.0, seed: int = 3) -> dict[str, Any]:
    """Both strategies on the same tasks, at *rate* and unlimited; return their figures."""
    rows = []
    for budget in (rate, UNLIMITED):
        for name in ("naive", "default"):
            row = await _one(name, tasks, budget, seed)
            row["rate"] = budget
            rows.append(row)
    return {"tasks": tasks, "rate": rate, "rows": rows}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse *argv*, run the benchmark, print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    result = anyio.run(run, args.tasks, args.rate, args.seed)
    print_grid(
        f"{result['tasks']} tasks of U(60, 300) s, one GET per check (virtual time, seconds)",
        ["strategy", "requests/s", "req/task", "p50", "p95", "max", "last seen at"],
        [
            [
                row["name"],
                "unlimited" if row["rate"] == UNLIMITED else f"{row['rate']:g}",
                row["requests_per_task"],
                row["p50"],
                row["p95"],
                row["max"],
                row["makespan"],
            ]
            for row in result["rows"]
        ],
    )
    return result


if __name__ == "__main__":
    main()
