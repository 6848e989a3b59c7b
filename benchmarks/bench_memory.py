"""Resident memory per tracked task: a PollScheduler holding 100k tasks vs the tasks alone.

Steps, each measured as RSS growth after a full garbage collection (``/proc/self/statm``):

1. build N bare :class:`~kling_async.Task` objects held in a list (the baseline: what the caller
   holds anyway);
2. add all of them to a :class:`PollScheduler` whose first check is far in the future, so fetch
   is never called; the growth is the scheduler's own overhead per task.

Reported: bytes per Task, bytes per task of scheduler overhead, and their ratio.

A second, realistic count (issue 9): per task, what the client keeps of it: its record of the
created task (``KlingClient.submit`` keeps its id and kind), its start in the
``CompletionModel``, and a scheduler with the default ``PollPolicy()`` tracking the task *as its
last status check parsed it from a CometAPI-wrapped answer* (fingerprinted, no ``raw`` while
it runs: see ``Task.raw``): all of it per task.

Run: ``.venv/bin/python benchmarks/bench_memory.py``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import anyio
from _common import print_table, rss_bytes, verdict

import kling_async as kling
from kling_async.completion import CompletionModel, profile_of
from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.models import TaskStatus
from kling_async.scheduler import PollScheduler
from kling_async.wire import fingerprint, parse_task

TARGET_BYTES = 1024


async def _never(task: kling.Task) -> kling.Task:
    raise AssertionError(f"fetch must not be called (task {task.id})")


def _wrapped_answer(index: int) -> dict[str, Any]:
    """A CometAPI-wrapped status answer's ``data`` for a running task (kling-api.md 2.4)."""
    task_id = str(800_000_000_000_000_000 + index)
    stamp = 1_780_000_000_000 + index
    return {
        "task_id": task_id,
        "action": "TEXT_GENERATION",
        "status": "IN_PROGRESS",
        "fail_reason": "",
        "submit_time": stamp,
        "start_time": stamp + 5,
        "finish_time": 0,
        "progress": "37%",
        "data": {
            "task_id": task_id,
            "task_status": "processing",
            "task_status_msg": "",
            "task_info": {"external_task_id": f"ext-{index}"},
            "task_result": {"videos": []},
            "watermark_info": {"enabled": False},
            "final_unit_deduction": "0",
            "created_at": stamp,
            "updated_at": stamp + 5,
        },
    }


def _create_answer(index: int) -> dict[str, Any]:
    """A create answer's ``data`` (kling-api.md 1.3)."""
    stamp = 1_780_000_000_000 + index
    return {
        "task_id": str(800_000_000_000_000_000 + index),
        "task_status": "submitted",
        "task_info": {"external_task_id": f"ext-{index}"},
        "created_at": stamp,
        "updated_at": stamp,
    }


def _realistic(tasks: int) -> float:
    """RSS per task: created, polled and kept the way ``submit`` and ``watch`` keep them.

    Per task: the client's own record of it (``submit`` keeps its id and kind), its start in the completion model, and the scheduler's entry
    holding the task as its last status check read it (a CometAPI-wrapped answer, parsed as
    the scheduler parses it: fingerprinted, no raw answer while it runs).
    """
    start = rss_bytes()
    model = CompletionModel()
    kinds: dict[str, kling.TaskKind] = {}
    scheduler = PollScheduler(_never, policy=kling.PollPolicy(), completions=model)
    profile = profile_of(kling.TextToVideo(prompt="x"), TEXT_TO_VIDEO.name)
    for index in range(tasks):
        created = parse_task(_create_answer(index), TEXT_TO_VIDEO)
        kinds[created.id] = created.kind
        model.submitted(created.id, profile, 0.0)
        body = json.dumps({"code": 0, "request_id": "r", "data": _wrapped_answer(index)})
        polled = parse_task(
            json.loads(body)["data"],
            TEXT_TO_VIDEO,
            fingerprint=fingerprint(body.encode()),
            keep_raw=False,
            like=created,
        )
        scheduler.add(polled)
    grown = rss_bytes() - start
    assert scheduler.tracked == tasks
    return grown / tasks


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
    # Measured while the above is still held: freed memory would be reused and hide growth.
    realistic = _realistic(tasks)
    assert scheduler.tracked == len(held)
    return {
        "realistic_bytes": realistic,
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
                f"realistic: parsed Task + client maps + default scheduler, bytes/task "
                f"(target <= {TARGET_BYTES})",
                f"{result['realistic_bytes']:.0f}  "
                f"{verdict(result['realistic_bytes'] <= TARGET_BYTES)}",
            ),
            (
                "RSS start -> end, MiB",
                f"{result['rss_start'] / 2**20:.1f} -> {result['rss_end'] / 2**20:.1f}",
            ),
        ],
    )
    return result


if __name__ == "__main__":
    main()
