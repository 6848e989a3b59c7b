"""Resident memory per tracked task: a PollScheduler holding 100k tasks vs the tasks alone.

Steps, each measured as RSS growth after a full garbage collection (``/proc/self/statm``):

1. build N bare :class:`~kling_async.Task` objects held in a list (the baseline: what the caller
   holds anyway);
2. add all of them to a :class:`PollScheduler` whose first check is far in the future, so fetch
   is never called; the growth is the scheduler's own overhead per task.

Reported: bytes per Task, bytes per task of scheduler overhead, and their ratio.

Run: ``.venv/bin/python benchmarks/bench_memory.py``
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import anyio
from _common import print_table, rss_bytes, verdict

import kling_async as kling
from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.models import TaskStatus
from kling_async.scheduler import PollScheduler

TARGET_BYTES = 1024


async def _never(task: kling.Task) -> kling.Task:
    raise AssertionError(f"fetch must not be called (task {task.id})")


async def run(tasks: int = 100_000) -> dict[str, Any]:
    """Measure RSS growth for the bare tasks, then for tracking them; return bytes per task."""
    start = rss_bytes()
    held = [
        kling.Task(
            id=str(800_000_000_000_000_000 + i),
            kind=TEXT_TO_VIDEO,
            status=TaskStatus.SUBMITTED,
            raw_status="submitted",
            external_task_id=f"ext-{i}",
        )
        for i in range(tasks)
    ]
    after_tasks = rss_bytes()
    scheduler = PollScheduler(_never, policy=kling.PollPolicy(first_delay=1e9))
    for task in held:
        scheduler.add(task)
    after_scheduler = rss_bytes()
    assert scheduler.tracked == tasks
    per_task = (after_tasks - start) / tasks
    overhead = (after_scheduler - after_tasks) / tasks
    return {
        "tasks": tasks,
        "task_bytes": per_task,
        "scheduler_bytes": overhead,
        "ratio": overhead / per_task if per_task > 0 else float("nan"),
        "rss_start": start,
        "rss_end": after_scheduler,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse *argv*, run the benchmark, print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args(argv)
    result = anyio.run(run, args.tasks)
    print_table(
        f"RSS per tracked task ({result['tasks']:,} tasks)",
        [
            ("bare Task objects, bytes/task", result["task_bytes"]),
            (
                f"scheduler overhead, bytes/task (target <= {TARGET_BYTES})",
                f"{result['scheduler_bytes']:.0f}  "
                f"{verdict(result['scheduler_bytes'] <= TARGET_BYTES)}",
            ),
            ("overhead / Task", f"{result['ratio']:.2f}x"),
            (
                "RSS start -> end, MiB",
                f"{result['rss_start'] / 2**20:.1f} -> {result['rss_end'] / 2**20:.1f}",
            ),
        ],
    )
    return result


if __name__ == "__main__":
    main()
