"""The README's many-task pattern with the defaults: ``submit_many(all)``, then ``watch(all)``.

Also its one-call form, ``client.as_completed(all)`` (submits as slots free, one watcher sees
each task from its creation), on the same durations: ``make bench`` prints both.

N tasks of D seconds each, then N tasks of about D seconds (+-25 %), S task slots enforced by the emulator and the client
(``max_active_tasks=S``), the client's default rate limit and default ``PollPolicy()``, all with
time compressed by ``--scale`` (durations, every time field of the policy, and the rate limit
multiplied by 1/scale alike). ``submit_many`` waits for slots; a slot frees when the client sees
a task finish, which while ``submit_many`` runs only its waiting submitters can see (no watcher
exists yet). Then ``watch`` tracks the rest.

Reported: the makespan against ``ceil(N / S) x D`` (the exact ideal when every task takes D;
with durations drawn +-25 % around D no schedule reaches it, since the slot that draws the
longest tasks sets the end, so that case is also reported against the list schedule of the very
durations drawn), status requests per task split into those
the scheduler made (``TaskPolled``) and those the waiting submitters made, and 1303 answers.
Issue 9's targets: makespan <= 1.05x, no 1303, and <= 2 status requests per task on top of what
detection needs. This measures where the library stands; it changes nothing.

Run: ``.venv/bin/python benchmarks/bench_readme_pattern.py``  (about 20 s)
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import random
import time
from collections.abc import Sequence
from typing import Any

import attrs
from _common import API_KEY, emulator_provider, print_grid, prompts, scaled_policy, verdict

import kling_async as kling
from kling_async.events import Event, TaskPolled, TaskSubmitted
from kling_async.limiter import RateLimit
from kling_async.testing import FakeKlingServer, FakeTask, Timeline

TARGET = 1.05
EXTRA_REQUESTS = 2.0


async def run(
    tasks: int = 40,
    slots: int = 10,
    duration: float = 180.0,
    scale: float = 0.02,
    seed: int = 5,
    spread: float = 0.25,
    form: str = "submit_many",
) -> dict[str, Any]:
    """Run the README pattern once (task durations uniform in D x (1 +- *spread*)), as
    ``submit_many`` then ``watch`` or, with *form* ``"as_completed"``, in one call."""

    def draw(task: FakeTask) -> float:
        rng = random.Random(f"{seed}-{task.external_task_id}")
        return rng.uniform((1 - spread) * duration, (1 + spread) * duration) * scale

    default_rate = kling.RateLimit(20, burst=40)
    rate = RateLimit(default_rate.per_second / scale, burst=default_rate.burst)
    policy = scaled_policy(kling.PollPolicy(), scale)
    timeline = Timeline(queue_seconds=0.0, processing_seconds=draw)
    async with FakeKlingServer(
        api_key=API_KEY, timeline=timeline, max_active_tasks=slots
    ) as server:
        provider = attrs.evolve(emulator_provider(server.url), supports_list=False)
        async with kling.KlingClient(
            api_key=API_KEY,
            provider=provider,
            rate=rate,
            poll=policy,
            max_active_tasks=slots,
            retry=kling.RetryPolicy(base=0.01, cap=0.05, jitter=0.0),
        ) as client:
            polled = 0
            submitted_at = during_submit = 0.0

            def on_event(event: Event) -> None:
                nonlocal polled, submitted_at, during_submit
                if isinstance(event, TaskPolled):
                    polled += 1
                elif isinstance(event, TaskSubmitted):  # the last one ends the submit phase
                    submitted_at = time.perf_counter()
                    during_submit = server.stats.routes["query"]

            client.events.add(on_event)
            started = time.perf_counter()
            finished = 0
            if form == "as_completed":
                async with client.as_completed(prompts(tasks, "readme")) as stream:
                    async for _task in stream:
                        finished += 1
            else:
                created = await client.submit_many(prompts(tasks, "readme"))
                async with client.watch(created) as results:
                    async for _task in results:
                        finished += 1
            makespan = time.perf_counter() - started
        queries = server.stats.routes["query"]
        rejected = server.stats.codes[1303]
        lives = [task.finished_at - task.created for task in server.tasks.values()]
        by_submission = [
            task.finished_at - task.created
            for task in sorted(server.tasks.values(), key=lambda task: task.created)
        ]
    waves = math.ceil(tasks / slots)
    ideal = waves * duration * scale
    drawn_ideal = list_schedule(by_submission, slots)
    # What detection needs with this policy's prior window: a first check one gap after the
    # window opens, then one per gap until the task is seen finished.
    low = policy.expected[0] if policy.expected is not None else 0.0
    gap = policy.detect_gap
    needed = sum(1 + max(0, math.ceil((life - low - gap) / gap)) for life in lives) / tasks
    return {
        "form": form,
        "spread": spread,
        "needed_per_task": needed,
        "extra_per_task": queries / tasks - needed,
        "tasks": tasks,
        "slots": slots,
        "finished": finished,
        "makespan_s": makespan / scale,
        "ideal_s": ideal / scale,
        "ratio": makespan / ideal,
        "drawn_ideal_s": drawn_ideal / scale,
        "drawn_ratio": makespan / drawn_ideal,
        "mean_task_s": sum(lives) / len(lives) / scale,
        "submit_phase_s": (submitted_at - started) / scale,
        "requests_per_task": queries / tasks,
        "scheduler_per_task": polled / tasks,
        "submitters_per_task": (queries - polled) / tasks,
        "during_submit_per_task": during_submit / tasks,
        "rejected_1303": rejected,
    }


def list_schedule(durations: Sequence[float], slots: int) -> float:
    """The makespan these very durations allow on *slots* slots, in submission order, with
    every finish seen at once (each task starts on the first slot that frees).

    ``ceil(N/S) x D`` ignores the spread of the durations: with +-25 % around D, even a
    scheduler that sees every finish instantly takes longer than that, because the slot that
    draws the longest tasks sets the end. This is the ideal the account's slots allow.

    Examples:
        >>> list_schedule([1.0, 1.0, 2.0], 2)
        3.0
    """
    free = [0.0] * slots
    for length in durations:
        start = heapq.heappop(free)
        heapq.heappush(free, start + length)
    return max(free)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse *argv*, run the benchmark (equal durations, then drawn ones, in both forms),
    print the figures.

    Returns the drawn durations' figures of ``submit_many`` then ``watch``, with the equal
    durations' under ``"constant"`` and the one-call form's (drawn, equal) under
    ``"as_completed"`` and ``"as_completed_constant"``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--duration", type=float, default=180.0, help="mean seconds per task")
    parser.add_argument("--scale", type=float, default=0.02, help="time compression factor")
    parser.add_argument("--spread", type=float, default=0.25, help="+- share of the drawn case")
    args = parser.parse_args(argv)
    sizes = {"tasks": args.tasks, "slots": args.slots, "duration": args.duration}
    runs = {
        (form, spread): asyncio.run(run(**sizes, scale=args.scale, spread=spread, form=form))
        for form in ("submit_many", "as_completed")
        for spread in (0.0, args.spread)
    }
    for result in runs.values():
        _print(result, args.duration, args.scale)
    drawn = runs["submit_many", args.spread]
    drawn["constant"] = runs["submit_many", 0.0]
    drawn["as_completed"] = runs["as_completed", args.spread]
    drawn["as_completed_constant"] = runs["as_completed", 0.0]
    return drawn


def _print(result: dict[str, Any], duration: float, scale: float) -> None:
    spread = result["spread"]
    each = f"{duration:g} s each" if not spread else f"{duration:g} s +-{spread:.0%}"
    ideal_rows = [
        [
            "makespan / ceil(N/S) x D"
            + (" (not reachable with drawn durations)" if spread else ""),
            f"{result['ratio']:.2f}x",
            f"<= {TARGET}x",
            verdict(result["ratio"] <= TARGET),
        ]
    ]
    if spread:
        ideal_rows.append(
            [
                "makespan / ideal for the drawn durations",
                f"{result['drawn_ratio']:.2f}x",
                f"<= {TARGET}x",
                verdict(result["drawn_ratio"] <= TARGET),
            ]
        )
    call = (
        "client.as_completed(all)"
        if result["form"] == "as_completed"
        else "submit_many(all), then watch(all)"
    )
    print_grid(
        f"README pattern, {call}: {result['tasks']} tasks of {each}, {result['slots']} slots, default "
        f"rate limit and PollPolicy (time x{scale:g}, seconds equivalent)",
        ["figure", "value", "target", ""],
        [
            *ideal_rows,
            ["status requests per task", result["requests_per_task"], "", ""],
            ["  by the scheduler", result["scheduler_per_task"], "", ""],
            ["  by waiting submitters", result["submitters_per_task"], "", ""],
            ["what detection needs (window schedule)", result["needed_per_task"], "", ""],
            [
                "requests on top of that",
                result["extra_per_task"],
                f"<= {EXTRA_REQUESTS:g}",
                verdict(result["extra_per_task"] <= EXTRA_REQUESTS),
            ],
            ["  sent before the last create", result["during_submit_per_task"], "", ""],
            ["1303 answers", result["rejected_1303"], "0", verdict(result["rejected_1303"] == 0)],
            ["submit phase s", result["submit_phase_s"], "", ""],
        ],
    )


if __name__ == "__main__":
    main()
