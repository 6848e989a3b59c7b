"""The poll scheduler on virtual time: delivery, pacing, limits, deadlines, errors, batching."""

from __future__ import annotations

import asyncio
import itertools
import random
import tracemalloc
from collections import Counter
from collections.abc import Iterable, Sequence

import anyio
import anyio.lowlevel
import pytest

from kling_async.errors import (
    APIConnectionError,
    ConfigurationError,
    NotFoundError,
    WaitTimeoutError,
)
from kling_async.events import Event, Retrying, TaskExpired, TaskFinished, TaskPolled
from kling_async.kinds import IMAGE_TO_VIDEO, TEXT_TO_VIDEO
from kling_async.models import Task, TaskStatus
from kling_async.scheduler import PollPolicy, PollScheduler
from kling_async.testing.clock import FakeClock

CLASSIC = PollPolicy(expected=None)
"""The age-based schedule (no completion window): these tests are about the loop's mechanics."""
NO_JITTER = PollPolicy(jitter=0, expected=None)


def make_task(task_id: str, status: TaskStatus = TaskStatus.SUBMITTED) -> Task:
    """A text-to-video task in the given state."""
    return Task(id=task_id, kind=TEXT_TO_VIDEO, status=status, raw_status=status.value)


class FakeServer:
    """Answers status checks from a script of finish times, on the fake clock."""

    def __init__(
        self,
        clock: FakeClock,
        finish_at: dict[str, float],
        *,
        fail: Iterable[str] = (),
        latency: float = 0.0,
        unlisted: Iterable[str] = (),
    ) -> None:
        self.clock = clock
        self.finish_at = finish_at
        self.fail = set(fail)
        self.latency = latency
        self.unlisted = set(unlisted)
        self.fetches: Counter[str] = Counter()
        self.fetch_times: dict[str, list[float]] = {}
        self.batch_sizes: list[int] = []
        self.errors: dict[str, list[Exception]] = {}
        self.in_flight = 0
        self.peak = 0

    def state(self, task_id: str) -> Task:
        if self.clock.now() < self.finish_at.get(task_id, float("inf")):
            return make_task(task_id, TaskStatus.PROCESSING)
        if task_id in self.fail:
            return make_task(task_id, TaskStatus.FAILED)
        return make_task(task_id, TaskStatus.SUCCEED)

    async def _call(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.clock.sleep(self.latency)
        finally:
            self.in_flight -= 1

    async def fetch(self, task: Task) -> Task:
        self.fetches[task.id] += 1
        self.fetch_times.setdefault(task.id, []).append(self.clock.now())
        await self._call()
        scripted = self.errors.get(task.id)
        if scripted:
            raise scripted.pop(0)
        return self.state(task.id)

    async def batch_fetch(self, tasks: Sequence[Task]) -> Sequence[Task]:
        self.batch_sizes.append(len(tasks))
        await self._call()
        return [self.state(task.id) for task in tasks if task.id not in self.unlisted]


async def collect(scheduler: PollScheduler, clock: FakeClock) -> list[tuple[float, Task]]:
    """Run *scheduler* to the end on auto-jumping time; return (time, task) per yielded task."""
    results: list[tuple[float, Task]] = []
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        results.extend([(clock.now(), task) async for task in scheduler])
    return results


async def drain_ids(scheduler: PollScheduler, into: list[str]) -> None:
    """Append each yielded task's id to *into*, keeping them if iteration raises."""
    async for task in scheduler:
        into.append(task.id)  # noqa: PERF401 - a comprehension would lose them on error


def test_policy_intervals_grow_geometrically_to_the_cap() -> None:
    """first_delay, then min_interval, times backoff per check, capped; per-kind overrides."""
    policy = PollPolicy(
        first_delay=2,
        min_interval=4,
        max_interval=20,
        backoff=2,
        jitter=0,
        per_kind={"image2video": PollPolicy(first_delay=60, jitter=0)},
    )
    assert [policy.interval(0, n) for n in range(6)] == [2, 4, 8, 16, 20, 20]
    assert policy.interval(0, 0, IMAGE_TO_VIDEO) == 60
    assert policy.interval(0, 0, TEXT_TO_VIDEO) == 2
    assert policy.interval(1000, 2) == 20  # an old task never polls faster than a tenth of its age
    assert policy.interval(0, 10_000) == 20  # no overflow for very long-lived tasks

    jittery = PollPolicy(jitter=0.1)
    rng = random.Random(7)
    samples = [jittery.interval(0, 50, rng=rng) for _ in range(200)]
    assert all(27 <= s <= 33 for s in samples)
    assert max(samples) - min(samples) > 3  # actually spread


def test_policy_validation() -> None:
    """Out-of-range policies are configuration errors."""
    with pytest.raises(ConfigurationError, match="min_interval"):
        PollPolicy(min_interval=60, max_interval=30)
    with pytest.raises(ConfigurationError, match="jitter"):
        PollPolicy(jitter=1.0)
    with pytest.raises(ConfigurationError, match="max_in_flight"):
        PollPolicy(max_in_flight=0)
    with pytest.raises(ConfigurationError, match="batch_size"):
        PollScheduler(FakeServer(FakeClock(), {}).fetch, batch_size=0)


async def test_every_task_yielded_exactly_once_in_completion_order() -> None:
    """500 tasks finishing at random times: each yielded once, failures too, promptly."""
    clock = FakeClock()
    rng = random.Random(2024)
    finish_at = {f"t{i}": rng.uniform(10, 600) for i in range(500)}
    failing = {f"t{i}" for i in range(0, 500, 10)}
    server = FakeServer(clock, finish_at, fail=failing, latency=0.2)
    finished_calls: Counter[str] = Counter()
    events: list[Event] = []
    scheduler = PollScheduler(
        server.fetch,
        clock=clock,
        policy=CLASSIC,
        on_finished=lambda task: finished_calls.update([task.id]),
        events=events.append,
        rng=random.Random(1),
    )
    for task_id in finish_at:
        scheduler.add(make_task(task_id))
    scheduler.close()

    results = await collect(scheduler, clock)

    ids = [task.id for _, task in results]
    assert len(ids) == 500
    assert set(ids) == set(finish_at)
    assert all(count == 1 for count in finished_calls.values())
    assert len(finished_calls) == 500
    assert {task.id for _, task in results if task.failed} == failing
    assert all(task.succeeded for _, task in results if task.id not in failing)
    times = [when for when, _ in results]
    assert times == sorted(times)
    for when, task in results:
        # Seen at most one (jittered) max_interval plus a fetch's latency after finishing.
        assert finish_at[task.id] <= when <= finish_at[task.id] + 30 * 1.1 + 0.2 + 1e-6
    finished_events = [e.task.id for e in events if isinstance(e, TaskFinished)]
    assert finished_events == ids
    assert sum(isinstance(e, TaskPolled) for e in events) == sum(server.fetches.values())
    assert scheduler.tracked == 0
    assert scheduler.pending == ()


async def test_checks_adapt_to_task_age() -> None:
    """A 300 s task with first_delay 5 and max 30 is checked about 14 times, not 60."""
    clock = FakeClock()
    server = FakeServer(clock, {"slow": 300.0})
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER)
    scheduler.add(make_task("slow"))
    scheduler.close()
    await collect(scheduler, clock)
    assert 12 <= server.fetches["slow"] <= 15
    times = server.fetch_times["slow"]
    assert times[0] == 5.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == sorted(gaps)
    assert max(gaps) == 30.0


async def test_max_in_flight_is_respected() -> None:
    """100 tasks due at once with slow fetches: never more than max_in_flight concurrent checks."""
    clock = FakeClock()
    server = FakeServer(clock, {f"t{i}": 20.0 for i in range(100)}, latency=1.0)
    scheduler = PollScheduler(
        server.fetch, clock=clock, policy=PollPolicy(max_in_flight=4, jitter=0, expected=None)
    )
    for i in range(100):
        scheduler.add(make_task(f"t{i}"))
    scheduler.close()
    results = await collect(scheduler, clock)
    assert len(results) == 100
    assert server.peak == 4


async def test_deadline_expiry_raises_after_finished_tasks_were_yielded() -> None:
    """An expired task does not hide finished ones: they come first, then WaitTimeoutError."""
    clock = FakeClock()
    server = FakeServer(clock, {"quick": 50.0, "late": 120.0})  # "stuck" never finishes
    events: list[Event] = []
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER, events=events.append)
    scheduler.add(make_task("quick"), deadline=200)
    scheduler.add(make_task("stuck"), deadline=100)
    scheduler.add(make_task("late"))
    scheduler.close()

    yielded: list[str] = []
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        with pytest.raises(WaitTimeoutError) as caught:
            await drain_ids(scheduler, yielded)

    assert yielded == ["quick", "late"]
    assert [task.id for task in caught.value.pending] == ["stuck"]
    assert caught.value.pending[0].status is TaskStatus.PROCESSING
    assert "stuck" in str(caught.value)
    assert server.fetch_times["stuck"][-1] == 100.0  # one last look exactly at the deadline
    assert [task.id for task in scheduler.expired] == ["stuck"]
    assert [e.task.id for e in events if isinstance(e, TaskExpired)] == ["stuck"]
    # The error is raised once; afterwards iteration is simply over.
    with pytest.raises(StopAsyncIteration):
        await scheduler.__anext__()


async def test_task_finishing_at_its_deadline_is_delivered() -> None:
    """The final check at the deadline counts: a task done by then is not reported expired."""
    clock = FakeClock()
    server = FakeServer(clock, {"just": 99.0})
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER)
    scheduler.add(make_task("just"), deadline=99.5)
    scheduler.close()
    results = await collect(scheduler, clock)
    assert [task.id for _, task in results] == ["just"]
    assert results[0][0] == 99.5


async def test_streaming_adds_while_iterating_and_close_ends_iteration() -> None:
    """Tasks added during iteration are tracked; iteration ends only after close()."""
    clock = FakeClock()
    server = FakeServer(clock, {})
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER)
    yielded: list[str] = []

    async def producer() -> None:
        for i in range(10):
            server.finish_at[f"s{i}"] = clock.now() + 7
            scheduler.add(make_task(f"s{i}"))
            await clock.sleep(20)
        await clock.sleep(100)  # nothing tracked for a while: iteration must not end yet
        scheduler.close()

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        tg.start_soon(producer)
        await drain_ids(scheduler, yielded)
        end = clock.now()

    assert yielded == [f"s{i}" for i in range(10)]
    assert end == pytest.approx(9 * 20 + 20 + 100)
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.add(make_task("too-late"))


async def test_update_delivers_immediately_and_reschedules() -> None:
    """A finished update is yielded at once; an unfinished one pushes the next check back."""
    clock = FakeClock()
    server = FakeServer(clock, {})  # never finishes by polling
    finished: list[str] = []
    scheduler = PollScheduler(
        server.fetch, clock=clock, policy=NO_JITTER, on_finished=lambda t: finished.append(t.id)
    )
    scheduler.add(make_task("hooked"))
    scheduler.add(make_task("other"))

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        await clock.sleep(3)
        scheduler.update(make_task("other", TaskStatus.PROCESSING))  # next check at 3 + 5
        scheduler.update(make_task("hooked", TaskStatus.SUCCEED))
        scheduler.update(make_task("unknown", TaskStatus.SUCCEED))  # ignored
        first = await scheduler.__anext__()
        assert clock.now() == 3
        assert first.id == "hooked"
        assert first.succeeded
        assert server.fetches["hooked"] == 0
        await clock.sleep(5.5)
        assert server.fetch_times["other"] == [8.0]
        scheduler.update(make_task("other", TaskStatus.FAILED))
        scheduler.close()
        rest = [task async for task in scheduler]

    assert [task.id for task in rest] == ["other"]
    assert finished == ["hooked", "other"]


async def test_duplicate_add_is_a_no_op() -> None:
    """The same id added twice (or again after delivery) is tracked and yielded once."""
    clock = FakeClock()
    server = FakeServer(clock, {"dup": 12.0})
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER)
    scheduler.add(make_task("dup"))
    scheduler.add(make_task("dup"))
    assert scheduler.tracked == 1
    done = make_task("done", TaskStatus.SUCCEED)
    scheduler.add(done)
    scheduler.add(done)
    assert scheduler.tracked == 1
    scheduler.close()
    results = await collect(scheduler, clock)
    assert sorted(task.id for _, task in results) == ["done", "dup"]
    assert server.fetches["dup"] == 3  # at 5, 10 and 17.5: one schedule, not two


async def test_already_finished_task_is_yielded_at_once() -> None:
    """Adding a finished task (a resumed batch) yields it without a check."""
    clock = FakeClock()
    server = FakeServer(clock, {})
    scheduler = PollScheduler(server.fetch, clock=clock, policy=CLASSIC)
    scheduler.add(make_task("old", TaskStatus.FAILED))
    scheduler.close()
    results = await collect(scheduler, clock)
    assert [(when, task.id) for when, task in results] == [(0.0, "old")]
    assert not server.fetches


async def test_cancelling_the_task_group_leaves_nothing_running() -> None:
    """Cancel mid-flight: no check survives, and run() can resume the same tasks later."""
    clock = FakeClock()
    server = FakeServer(clock, {f"t{i}": 40.0 for i in range(50)}, latency=3.0)
    scheduler = PollScheduler(
        server.fetch, clock=clock, policy=PollPolicy(max_in_flight=8, jitter=0, expected=None)
    )
    for i in range(50):
        scheduler.add(make_task(f"t{i}"))

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        await clock.sleep(6)  # checks are in flight now
        assert server.in_flight > 0
        tg.cancel_scope.cancel()

    assert server.in_flight == 0
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    assert others == []
    assert scheduler.tracked == 50

    scheduler.close()
    results = await collect(scheduler, clock)
    assert len(results) == 50


async def test_fetch_errors_are_retried_with_backoff() -> None:
    """A failing check is retried sooner, with Retrying events, until it works."""
    clock = FakeClock()
    server = FakeServer(clock, {"flaky": 1.0})
    server.errors["flaky"] = [APIConnectionError(f"reset {n}") for n in range(3)]
    events: list[Event] = []
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER, events=events.append)
    scheduler.add(make_task("flaky"))
    scheduler.close()
    results = await collect(scheduler, clock)
    assert [task.id for _, task in results] == ["flaky"]
    retries = [e for e in events if isinstance(e, Retrying)]
    assert [(e.attempt, e.delay) for e in retries] == [(1, 5.0), (2, 10.0), (3, 20.0)]
    assert all(isinstance(e.error, APIConnectionError) for e in retries)
    assert server.fetch_times["flaky"] == [5.0, 10.0, 20.0, 40.0]


async def test_retry_budget_exhausted_raises_after_finished_tasks() -> None:
    """An error that outlasts the retry budget is raised once the finished tasks are out."""
    clock = FakeClock()
    server = FakeServer(clock, {"ok": 1.0})
    broken = APIConnectionError("down for good")
    server.errors["down"] = [broken] * 10
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER, retry_budget=2)
    scheduler.add(make_task("ok"))
    scheduler.add(make_task("down"))
    scheduler.close()
    yielded: list[str] = []
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        with pytest.raises(APIConnectionError, match="down for good"):
            await drain_ids(scheduler, yielded)
    assert yielded == ["ok"]
    assert server.fetches["down"] == 3
    assert [task.id for task in scheduler.pending] == ["down"]


async def test_not_found_is_fatal_and_surfaces_after_finished_tasks() -> None:
    """NotFoundError is not retried: it stops the loop and is raised after finished tasks."""
    clock = FakeClock()
    server = FakeServer(clock, {"done": 3.0})
    server.errors["gone"] = [NotFoundError("no such task", status=404, code=1203)]
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER)
    scheduler.add(make_task("done"))
    scheduler.add(make_task("gone"))
    scheduler.add(make_task("later"))  # never finishes: the error must not wait for it
    scheduler.close()
    yielded: list[str] = []
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        with pytest.raises(NotFoundError):
            await drain_ids(scheduler, yielded)
    assert yielded == ["done"]
    assert server.fetches["gone"] == 1
    assert clock.now() == 5.0


async def test_batch_fetch_is_used_and_missing_tasks_fall_back() -> None:
    """Due tasks are checked in batches; tasks the list does not return are polled alone."""
    clock = FakeClock()
    finish_at = {f"b{i}": 30.0 for i in range(30)}
    missing = {"b3", "b17", "b29"}
    server = FakeServer(clock, finish_at, unlisted=missing)
    scheduler = PollScheduler(
        server.fetch,
        batch_fetch=server.batch_fetch,
        batch_size=10,
        clock=clock,
        policy=NO_JITTER,
    )
    for task_id in finish_at:
        scheduler.add(make_task(task_id))
    scheduler.close()
    results = await collect(scheduler, clock)
    assert sorted(task.id for _, task in results) == sorted(finish_at)
    assert server.batch_sizes
    assert max(server.batch_sizes) == 10
    assert set(server.fetches) == missing
    # The first round at t=5 covers everyone; then the three fall back to single fetches, at once.
    assert server.batch_sizes[:3] == [10, 10, 10]
    assert sorted(server.batch_sizes[3:6]) == [7, 10, 10]
    assert all(times[0] == 5.0 for task_id, times in server.fetch_times.items())


async def test_a_list_answer_counts_for_every_tracked_task_it_shows() -> None:
    """List checks cover tasks that were not due yet, and then run every ``list_interval``.

    "b" is added 3 s after "a". Without the list answer counting for it, "b" would need its own
    checks at 8, 13, ...; with it, one list request per round serves both.
    """
    clock = FakeClock()
    server = FakeServer(clock, {"a": 12.0, "b": 12.0})
    calls: list[float] = []

    async def list_everything(tasks: Sequence[Task]) -> Sequence[Task]:
        calls.append(clock.now())
        return [server.state(task_id) for task_id in ("a", "b")]

    scheduler = PollScheduler(
        server.fetch,
        batch_fetch=list_everything,
        clock=clock,
        policy=PollPolicy(first_delay=5, list_interval=5, max_interval=30, jitter=0, expected=None),
    )
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        scheduler.add(make_task("a"))
        await clock.sleep(3)
        scheduler.add(make_task("b"))
        scheduler.close()
        finished = sorted([task.id async for task in scheduler])

    assert finished == ["a", "b"]
    assert calls == [5.0, 10.0, 15.0]
    assert not server.fetches  # no single-task checks at all


async def test_an_early_list_check_does_not_put_off_a_tasks_first_check() -> None:
    """A list read for other tasks before "b"'s first check is due keeps that check in place.

    "b" (and "d", which runs on) is added 0.1 s after "a" and finishes exactly at its first
    check (2.1 s). The list
    read due for "a" at 2.0 s also shows "b", still running; the list's pace (every 0.25 s)
    would put b's next check at 2.25 s, a quarter second after it finished. It is checked at
    2.1 s instead, where the policy put it, and not earlier than min_interval after the read.
    """
    clock = FakeClock()
    server = FakeServer(clock, {"a": 1.5, "b": 2.1, "c": 2.01, "d": 3.0})
    calls: list[float] = []

    async def list_everything(tasks: Sequence[Task]) -> Sequence[Task]:
        calls.append(clock.now())
        return [server.state(task_id) for task_id in ("a", "b", "c", "d")]

    policy = PollPolicy(
        first_delay=2.0,
        min_interval=0.05,
        max_interval=0.25,
        list_interval=0.25,
        jitter=0,
        expected=None,
    )
    scheduler = PollScheduler(server.fetch, batch_fetch=list_everything, clock=clock, policy=policy)
    seen: dict[str, float] = {}
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        scheduler.add(make_task("a"))
        await clock.sleep(0.02)
        scheduler.add(make_task("c"))  # first due at 2.02: not before 2.0 + min_interval
        await clock.sleep(0.08)
        scheduler.add(make_task("b"))
        scheduler.add(make_task("d"))  # keeps the list in use after b
        scheduler.close()
        async for task in scheduler:
            seen[task.id] = clock.now()

    assert calls[:3] == [2.0, 2.05, 2.1]
    assert {name: seen[name] for name in "acb"} == {"a": 2.0, "c": 2.05, "b": 2.1}


async def test_a_stale_list_answer_does_not_cancel_a_hint() -> None:
    """A list answer sent before ``poll_soon(b)`` must not count as b's check.

    The list request for "a" is in flight (2 s) when b's hint arrives; its page shows b as it
    was before the hint, so b must still be checked right after it, not 120 s later.
    """
    clock = FakeClock()
    server = FakeServer(clock, {"b": 120.5})
    calls: list[tuple[float, list[str]]] = []

    async def slow_list(tasks: Sequence[Task]) -> Sequence[Task]:
        calls.append((clock.now(), [task.id for task in tasks]))
        page = [server.state(task_id) for task_id in ("a", "b")]  # as the request was served
        await clock.sleep(2.0)
        return page

    scheduler = PollScheduler(
        server.fetch,
        batch_fetch=slow_list,
        clock=clock,
        policy=PollPolicy(jitter=0, callback_interval=120, max_in_flight=1, expected=None),
    )
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        scheduler.add(make_task("a"), has_callback=True)  # safety-net check at 120
        await clock.sleep(3)
        scheduler.add(make_task("b"), has_callback=True)  # safety-net check at 123
        await clock.sleep(118)  # 121: b's callback said "succeed"; the list for a is in flight
        scheduler.poll_soon("b")
        task = await scheduler.__anext__()
        assert task.id == "b"
        assert clock.now() == pytest.approx(124.0)  # the check right after the stale answer
        tg.cancel_scope.cancel()

    assert calls == [(120.0, ["a"]), (122.0, ["b"])]


async def test_a_fetch_that_never_awaits_does_not_starve_the_event_loop() -> None:
    """Checks that fall due back to back, answered without awaiting, still let others run."""
    calls = 0

    async def instant(task: Task) -> Task:
        nonlocal calls
        calls += 1
        status = TaskStatus.SUCCEED if calls >= 2000 else TaskStatus.PROCESSING
        return make_task(task.id, status)

    ticks = 0

    async def other_work() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    tiny = 1e-9
    policy = PollPolicy(first_delay=tiny, min_interval=tiny, max_interval=tiny, jitter=0)
    scheduler = PollScheduler(instant, policy=policy)
    async with anyio.create_task_group() as tg:
        tg.start_soon(other_work)
        await anyio.lowlevel.checkpoint()
        before = ticks
        tg.start_soon(scheduler.run)
        scheduler.add(make_task("busy"))
        scheduler.close()
        assert [task.id async for task in scheduler] == ["busy"]
        assert ticks - before > 10  # the other task kept running during 2000 checks
        tg.cancel_scope.cancel()


async def test_callback_tasks_are_polled_rarely_and_poll_soon_checks_now() -> None:
    """Webhook-backed tasks use callback_interval; poll_soon() triggers an immediate check."""
    clock = FakeClock()
    server = FakeServer(clock, {"hook": 300.0, "hint": 50.0})
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER)
    scheduler.add(make_task("hook"), has_callback=True)
    scheduler.add(make_task("hint"), has_callback=True)

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        await clock.sleep(51)
        scheduler.poll_soon("hint")
        scheduler.poll_soon("nobody")  # ignored
        first = await scheduler.__anext__()
        assert (first.id, clock.now()) == ("hint", 51)
        scheduler.close()
        rest = [task.id async for task in scheduler]

    assert rest == ["hook"]
    assert server.fetch_times["hook"] == [120.0, 240.0, 360.0]
    assert server.fetch_times["hint"] == [51.0]


async def test_poll_soon_during_a_check_rechecks_after_it() -> None:
    """A hint that arrives while a check is in flight is not lost: another check follows at once.

    The running check was sent before the task finished, so its answer is stale; without the
    recheck the finish would wait for the next safety-net poll (``callback_interval``).
    """
    clock = FakeClock()
    # Answers describe the task as it is when they arrive, 2 s after the check was sent.
    server = FakeServer(clock, {"slow": 122.5}, latency=2.0)
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER)
    scheduler.add(make_task("slow"), has_callback=True)

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        await clock.sleep(121)  # the first check, sent at 120, answers "processing" at 122
        assert server.in_flight == 1
        scheduler.poll_soon("slow")
        task = await scheduler.__anext__()
        assert task.succeeded
        assert clock.now() == pytest.approx(124.0)
        scheduler.close()
        assert [t async for t in scheduler] == []

    assert server.fetch_times["slow"] == [120.0, 122.0]


async def test_a_hint_ahead_of_the_api_is_checked_again_soon() -> None:
    """A callback says "finished" before the API does: look again after min_interval, not
    after the (long) safety-net interval."""
    clock = FakeClock()
    server = FakeServer(clock, {"lagging": 53.0})
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER)  # min_interval 5
    scheduler.add(make_task("lagging"), has_callback=True)  # safety net every 120 s

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        await clock.sleep(50)
        scheduler.poll_soon("lagging")  # the callback came at 50; the API shows it at 53
        task = await scheduler.__anext__()
        assert task.succeeded
        scheduler.close()
        assert [t async for t in scheduler] == []

    assert server.fetch_times["lagging"] == [50.0, 55.0]


async def test_on_finished_errors_do_not_break_the_loop() -> None:
    """A raising on_finished callback is logged; every task is still delivered."""
    clock = FakeClock()
    server = FakeServer(clock, {"a": 1.0, "b": 2.0})

    def broken(task: Task) -> None:
        raise RuntimeError("oops")

    scheduler = PollScheduler(server.fetch, clock=clock, policy=CLASSIC, on_finished=broken)
    scheduler.add(make_task("a"))
    scheduler.add(make_task("b"))
    scheduler.close()
    results = await collect(scheduler, clock)
    assert sorted(task.id for _, task in results) == ["a", "b"]


async def test_stop_ends_run_and_iteration() -> None:
    """stop() cancels checks in flight, returns from run() and ends iteration quietly."""
    clock = FakeClock()
    server = FakeServer(clock, {"x": 1.0}, latency=10.0)
    scheduler = PollScheduler(server.fetch, clock=clock, policy=NO_JITTER)
    scheduler.add(make_task("x"))
    scheduler.add(make_task("y"))

    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        await clock.sleep(7)
        scheduler.stop()
        rest = [task async for task in scheduler]
    assert rest == []
    assert server.in_flight == 0
    assert sorted(task.id for task in scheduler.pending) == ["x", "y"]


async def test_memory_per_tracked_task_is_small() -> None:
    """Tracking costs well under 1 KiB per task (the tasks themselves are the caller's)."""
    clock = FakeClock()
    scheduler = PollScheduler(FakeServer(clock, {}).fetch, clock=clock)
    tasks = [make_task(f"{i:020d}") for i in range(20_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for task in tasks:
            scheduler.add(task, deadline=1e9)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_task = (after - before) / len(tasks)
    assert per_task < 1024, per_task


async def test_a_task_left_out_of_a_by_id_answer_is_retried_in_later_batches() -> None:
    """``batch_pages=False`` (reads by id): a task missing from one answer is a failed check,
    asked for again in a later batch; it is not moved to its own fetch nor ends the watch."""
    clock = FakeClock()
    finish_at = {f"b{i}": 12.0 for i in range(6)}
    server = FakeServer(clock, finish_at)
    misses = {"b2": 2}

    async def lagging(tasks: Sequence[Task]) -> Sequence[Task]:
        answer = await server.batch_fetch(tasks)
        left_out = {task_id for task_id, count in misses.items() if count > 0}
        for task_id in left_out:
            misses[task_id] -= 1
        return [task for task in answer if task.id not in left_out]

    events: list[Event] = []
    scheduler = PollScheduler(
        server.fetch,
        batch_fetch=lagging,
        batch_size=20,
        batch_pages=False,
        clock=clock,
        policy=NO_JITTER,
        events=events.append,
    )
    for task_id in finish_at:
        scheduler.add(make_task(task_id))
    scheduler.close()
    results = await collect(scheduler, clock)
    assert sorted(task.id for _, task in results) == sorted(finish_at)
    # Only as the last task left (a lone task is always checked by its own fetch).
    assert set(server.fetches) <= {"b2"}
    assert server.fetches["b2"] <= 1
    retried = [event for event in events if isinstance(event, Retrying)]
    assert len(retried) == 2
    assert all("left out task b2" in str(event.error) for event in retried)
