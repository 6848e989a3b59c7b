"""Completion times learnt per request profile, and the scheduler checking where tasks finish."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import anyio
import attrs
import pytest

import kling_async as kling
from kling_async.completion import (
    MIN_SAMPLES,
    SAMPLES,
    CompletionModel,
    CompletionTimes,
    prior_scale,
    profile_of,
    progress_of,
)
from kling_async.errors import ConfigurationError
from kling_async.models import ImageToVideo, Task, TaskStatus, TextToVideo
from kling_async.scheduler import PollPolicy, PollScheduler
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.testing.clock import FakeClock

from .conftest import API_KEY, FAST_RETRY
from .test_scheduler import FakeServer, collect, make_task

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


class TestCompletionTimes:
    """The per-profile ring of completion times."""

    def test_nonsense_is_ignored(self) -> None:
        """Zero, negative, NaN, infinite and week-long times are not data."""
        times = CompletionTimes()
        for value in (0.0, -3.0, float("nan"), float("inf"), 8 * 24 * 3600.0):
            times.add(value)
        assert len(times) == 0
        assert times.quantile(0.5) is None
        assert times.window() is None

    def test_keeps_only_the_latest_samples(self) -> None:
        """Memory is bounded: after a drift the window follows the recent tasks only."""
        times = CompletionTimes()
        for _ in range(SAMPLES):
            times.add(100.0)
        for _ in range(SAMPLES):
            times.add(200.0)
        assert len(times) == SAMPLES
        assert times.window() == (200.0, 200.0)
        assert "samples=64" in repr(times)

    def test_window_needs_a_few_samples_and_covers_them(self) -> None:
        """No window before MIN_SAMPLES; then one that contains every sample seen."""
        times = CompletionTimes()
        rng = random.Random(3)
        values = [rng.uniform(90, 150) for _ in range(MIN_SAMPLES)]
        for value in values[:-1]:
            times.add(value)
        assert times.window() is None
        times.add(values[-1])
        window = times.window()
        assert window is not None
        assert window[0] <= min(values)
        assert window[1] >= max(values)
        assert times.quantile(0) == min(values)
        assert times.quantile(1) == max(values)

    def test_window_or_prior_scaled(self) -> None:
        """Until learnt, the prior applies, scaled for the profile."""
        assert CompletionTimes(0.5).window_or((60, 300)) == (30, 150)
        times = CompletionTimes(0.5)
        for value in (100, 101, 102, 103, 104):
            times.add(value)
        low, high = times.window_or((60, 300))
        assert 90 < low < 100
        assert high == 150  # never below the prior's: a batch is learnt quick tasks first
        assert times.window_or((60, 100)) == (low, pytest.approx(104.688))


class TestCompletionModel:
    """Profiles and tasks in flight."""

    def test_profiles_are_bounded_least_recently_used_first(self) -> None:
        """Beyond max_profiles the profile used longest ago is dropped."""
        model = CompletionModel(max_profiles=2)
        first = model.times(("a",))
        model.times(("b",))
        assert model.times(("a",)) is first  # now the most recent
        model.times(("c",))
        assert model.times(("a",)) is first
        assert model.times(("b",)) is not None  # recreated, empty
        assert "profiles=2" in repr(model)

    def test_submitted_started_forget(self) -> None:
        """A task's profile and creation time are kept until it is forgotten."""
        model = CompletionModel()
        model.submitted("t1", ("text2video", "", "", "5"), 12.5)
        assert model.started("t1") == (model.times(("text2video", "", "", "5")), 12.5)
        model.forget("t1")
        model.forget("t1")  # twice is fine
        assert model.started("t1") is None

    def test_profile_and_prior_scale(self) -> None:
        """The profile names kind, model, mode and duration; turbo models start at half."""
        request = ImageToVideo(image="https://example.invalid/a.png", model_name="kling-v2-5-turbo")
        profile = profile_of(request, "image2video")
        assert profile == ("image2video", "kling-v2-5-turbo", "", "5")
        assert prior_scale(profile) == 0.5
        assert prior_scale(profile_of(TextToVideo(prompt="x"), "text2video")) == 1.0
        assert prior_scale("not a tuple") == 1.0
        assert CompletionModel().times(profile).prior_scale == 0.5


class TestPolicy:
    """PollPolicy's completion window."""

    def test_default_has_the_documented_prior_and_tuned_policies_keep_theirs(self) -> None:
        """PollPolicy() checks by window; one with hand-set timing keeps the age-based schedule."""
        assert PollPolicy().expected == (60.0, 300.0)
        assert PollPolicy(first_delay=1).expected is None
        assert PollPolicy(max_interval=60).expected is None
        assert PollPolicy(first_delay=1, expected=(10, 20)).expected == (10, 20)

    @pytest.mark.parametrize("expected", [(-1.0, 10.0), (10.0, 10.0), (20.0, 10.0)])
    def test_bad_window_is_a_configuration_error(self, expected: tuple[float, float]) -> None:
        """The window must run forward from zero or later."""
        with pytest.raises(ConfigurationError, match="expected"):
            PollPolicy(expected=expected)

    def test_jitter_only_moves_the_first_check_earlier(self) -> None:
        """Jitter spreads first checks over a fifth of a gap; later gaps are whole."""
        policy = PollPolicy(jitter=0.2, detect_gap=10)
        rng = random.Random(5)
        assert {policy.window_interval(100, (60, 300), rng=rng) for _ in range(20)} == {10}
        firsts = [policy.window_interval(0, (60, 300), rng=rng) for _ in range(200)]
        assert all(68 <= first <= 70 for first in firsts)
        assert max(firsts) - min(firsts) > 1

    def test_a_lead_spreads_first_checks_over_one_round_of_the_budget(self) -> None:
        """With more tasks than the budget checks in a gap, first checks spread over the
        round (ahead of the window) and, once checked, keep that round's pace until it."""
        policy = PollPolicy(jitter=0.1, detect_gap=10)
        rng = random.Random(7)
        firsts = [policy.window_interval(0, (60, 300), rng=rng, lead=25) for _ in range(500)]
        assert all(45 <= first <= 70 for first in firsts)
        # The whole round, not a jitter's width.
        assert min(firsts) < 47
        assert max(firsts) > 68
        assert policy.window_interval(40, (60, 300), lead=25, checked=True) == 25
        # Back by the time an unspread first check would come.
        assert policy.window_interval(50, (60, 300), lead=25, checked=True) == 20
        # Without a spread, a task checked early is scheduled as if it had not been.
        assert 19 <= policy.window_interval(50, (60, 300), rng=rng, lead=0, checked=True) <= 20
        assert policy.window_interval(65, (60, 300), lead=25, checked=True) == 10
        # A round longer than the time to the window spreads over the time left, not at once.
        long = [policy.window_interval(0, (60, 300), rng=rng, lead=500) for _ in range(200)]
        assert all(0 < first <= 70 for first in long)
        assert sum(first < 1 for first in long) < 10

    async def test_a_tight_budget_spreads_the_scheduler_s_first_checks(self) -> None:
        """Told the rate, the scheduler does not let 100 tasks created together fall due at
        once: their first checks spread over the 20 s one round of them takes at 5/s."""
        clock = FakeClock()
        finish_at = {f"t{i}": 100.0 for i in range(100)}
        spans = []
        for rate in (None, 5.0):
            server = FakeServer(clock, finish_at)
            scheduler = PollScheduler(server.fetch, clock=clock, rng=random.Random(1), rate=rate)
            started = clock.now()
            for task_id in finish_at:
                scheduler.add(make_task(task_id))
            scheduler.close()
            await collect(scheduler, clock)
            firsts = [times[0] - started for times in server.fetch_times.values()]
            spans.append(max(firsts) - min(firsts))
        unpaced, paced = spans
        assert unpaced < 5  # the default jitter's width
        assert paced > 15

    def test_a_narrow_learnt_span_is_checked_just_after_it(self) -> None:
        """Tasks like it finished within 2 s: the first check goes just after that span
        (jittered later, never before it ends) instead of a whole gap after its start."""
        policy = PollPolicy(jitter=0.1, detect_gap=10)
        rng = random.Random(3)
        firsts = [policy.window_interval(0, (180, 300), rng=rng, ends_by=182) for _ in range(200)]
        assert all(182 <= first <= 183 for first in firsts)
        assert max(firsts) - min(firsts) > 0.5
        # A span as wide as a gap, or no learnt span, keeps the usual first check.
        assert 189 <= policy.window_interval(0, (180, 300), rng=rng, ends_by=195) <= 190
        assert 189 <= policy.window_interval(0, (180, 300), rng=rng) <= 190
        # Once inside the window, or once checked, the gaps are whole again.
        assert policy.window_interval(183, (180, 300), rng=rng, ends_by=182) == 10

    def test_past_the_window_checks_spread_out_to_the_cap(self) -> None:
        """A task in the tail (a backlog) is checked less often, never beyond max_interval."""
        policy = PollPolicy(jitter=0, detect_gap=10)
        assert policy.window_interval(300, (60, 300)) == 10
        assert policy.window_interval(450, (60, 300)) == 15
        assert policy.window_interval(3000, (60, 300)) == 30


def _finishing(clock: FakeClock, finish_at: dict[str, float]) -> FakeServer:
    return FakeServer(clock, finish_at)


async def _wave(
    clock: FakeClock, model: CompletionModel, finish_at: dict[str, float]
) -> tuple[FakeServer, list[tuple[float, Task]]]:
    """Track tasks finishing at *finish_at* with one scheduler learning into *model*, until all
    are delivered: the server (its checks) and the deliveries."""
    server = _finishing(clock, finish_at)
    scheduler = PollScheduler(server.fetch, clock=clock, completions=model, rng=random.Random(1))
    for task_id in finish_at:
        scheduler.add(make_task(task_id))
    scheduler.close()
    return server, await collect(scheduler, clock)


async def test_window_schedule_beats_a_ten_second_loop_on_virtual_time() -> None:
    """U(60, 300) s tasks: none checked before the window, 95 % seen within detect_gap of their
    finish (the rest, past a window learnt from the early finishers, a little later), and fewer
    checks than a fixed 10 s loop would make."""
    clock = FakeClock()
    rng = random.Random(11)
    finish_at = {f"t{i}": rng.uniform(60, 300) for i in range(200)}
    server = _finishing(clock, finish_at)
    scheduler = PollScheduler(server.fetch, clock=clock, rng=random.Random(2))
    for task_id in finish_at:
        scheduler.add(make_task(task_id))
    scheduler.close()
    results = await collect(scheduler, clock)

    assert len(results) == 200
    assert min(min(times) for times in server.fetch_times.values()) >= 60 + 9.5 * 0.9
    latencies = sorted(when - finish_at[task.id] for when, task in results)
    assert latencies[0] >= 0
    assert latencies[int(0.95 * len(latencies)) - 1] <= 9.5 + 1e-6
    assert latencies[-1] <= 15
    naive = sum(int(finish // 10) + 1 for finish in finish_at.values())
    assert sum(server.fetches.values()) <= 0.75 * naive


async def test_learnt_window_moves_the_next_tasks_checks() -> None:
    """Tasks that all take about 200 s: once learnt, the next ones are first checked near 200 s
    rather than at the prior's 70 s, and with fewer checks."""
    clock = FakeClock()
    model = CompletionModel()
    first = {f"a{i}": 195 + i for i in range(10)}
    server, _ = await _wave(clock, model, first)
    cold_checks = sum(server.fetches.values())
    assert len(model.times(("text2video",))) == 10  # learnt from the check brackets

    start = clock.now()
    second = {f"b{i}": start + 195 + i for i in range(10)}
    server, results = await _wave(clock, model, second)
    assert len(results) == 10
    assert min(min(times) for times in server.fetch_times.values()) - start > 150
    assert sum(server.fetches.values()) < cold_checks / 3
    for when, task in results:
        assert when - second[task.id] <= 10 + 1e-6


async def test_tasks_that_take_the_same_time_are_seen_within_a_second_once_learnt() -> None:
    """The README's waves: tasks of one kind that all take 180 s (as the server's stamps
    tell). Once learnt, the next ones are seen about a second after they finish, not up to a
    gap later, with one check each."""
    clock = FakeClock()
    model = CompletionModel()
    for _ in range(10):
        model.times(("text2video",)).add(180.0)
    start = clock.now()
    finish_at = {f"b{i}": start + 180.0 for i in range(10)}
    server, results = await _wave(clock, model, finish_at)
    assert len(results) == 10
    for when, task in results:
        assert 0 <= when - finish_at[task.id] <= 1.5
    assert all(count == 1 for count in server.fetches.values())


async def test_server_stamps_are_learnt_and_failures_are_not() -> None:
    """With created/updated stamps the exact time is learnt; failed tasks teach nothing."""
    clock = FakeClock()
    model = CompletionModel()

    async def fetch(task: Task) -> Task:
        status = TaskStatus.FAILED if task.id.startswith("bad") else TaskStatus.SUCCEED
        return attrs.evolve(
            task,
            status=status,
            created_at=EPOCH,
            updated_at=EPOCH + timedelta(seconds=42),
        )

    scheduler = PollScheduler(fetch, clock=clock, completions=model)
    scheduler.add(make_task("good"))
    scheduler.add(make_task("bad"))
    scheduler.close()
    await collect(scheduler, clock)
    times = model.times(("text2video",))
    assert len(times) == 1
    assert times.quantile(0.5) == 42


async def test_webhook_update_is_learnt_and_creation_time_is_the_origin() -> None:
    """A task created 50 s before it was tracked is first checked by its creation time; a
    finished update() is learnt from its stamps and forgotten by the model."""
    clock = FakeClock()
    model = CompletionModel()
    await clock.advance(100)
    model.submitted("t", ("text2video",), at=50)
    server = _finishing(clock, {})
    scheduler = PollScheduler(
        server.fetch, clock=clock, completions=model, policy=PollPolicy(jitter=0)
    )
    scheduler.add(make_task("t"))
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        await clock.sleep(25)
        assert server.fetch_times["t"] == [119.5]  # 50 + 60 + 9.5, not 100 + 69.5
        finished = attrs.evolve(
            make_task("t", TaskStatus.SUCCEED),
            created_at=EPOCH,
            updated_at=EPOCH + timedelta(seconds=80),
        )
        scheduler.update(finished)
        scheduler.close()
        assert [task.id async for task in scheduler] == ["t"]
    assert model.times(("text2video",)).quantile(0.5) == 80
    assert model.started("t") is None


async def test_expired_tasks_are_forgotten() -> None:
    """A task given up at its deadline leaves nothing behind in the model."""
    clock = FakeClock()
    model = CompletionModel()
    model.submitted("slow", ("text2video",), at=0)
    scheduler = PollScheduler(_finishing(clock, {}).fetch, clock=clock, completions=model)
    scheduler.add(make_task("slow"), deadline=100)
    scheduler.close()
    async with clock.autojump(), anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        with pytest.raises(kling.WaitTimeoutError):
            await scheduler.__anext__()
    assert model.started("slow") is None


async def test_client_learns_from_the_emulator() -> None:
    """End to end: submit notes each task's profile, watch learns its time from the wire stamps,
    and seeing the task finish forgets it."""
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.15)
    policy = PollPolicy(detect_gap=0.05, expected=(0.1, 1.0), first_delay=0.01, min_interval=0.01)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as server,
        kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=FAST_RETRY,
            poll=policy,
            rate=None,
        ) as client,
    ):
        requests = [TextToVideo(prompt=f"p{i}", mode="pro", duration="10") for i in range(3)]
        tasks = await client.submit_many(requests)
        # The client names its default model, so the profile carries it.
        profile = ("text2video", kling.providers.DEFAULT_VIDEO_MODEL, "pro", "10")
        started = client.completions.started(tasks[0].id)
        assert started is not None
        assert started[0] is client.completions.times(profile)
        async with client.watch(tasks, timeout=30) as results:
            done = [task async for task in results]
        assert all(task.succeeded for task in done)
        times = client.completions.times(profile)
        assert len(times) == 3
        median = times.quantile(0.5)
        assert median is not None
        assert 0.15 <= median < 1.0
        assert all(client.completions.started(task.id) is None for task in tasks)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"progress": "42%"}, 42.0),
        ({"progress": 7}, 7.0),
        ({"progress": "0%"}, None),
        ({"progress": "100%"}, None),
        ({"progress": "soon"}, None),
        ({"progress": None}, None),
        ({}, None),
    ],
)
def test_progress_of(raw: dict[str, object], expected: float | None) -> None:
    """Only a readable percentage strictly between 0 and 100 counts."""
    task = attrs.evolve(make_task("p", TaskStatus.PROCESSING), raw=raw)
    assert progress_of(task) == expected


async def _checks_with_progress(*, use_progress: bool, moving: bool) -> tuple[int, float]:
    """Tasks of 60-300 s whose answers carry a linear (or stuck) progress: total checks and the
    worst detection latency."""
    clock = FakeClock()
    rng = random.Random(4)
    finish_at = {f"t{i}": rng.uniform(60, 300) for i in range(50)}

    async def fetch(task: Task) -> Task:
        now = clock.now()
        end = finish_at[task.id]
        if now >= end:
            return make_task(task.id, TaskStatus.SUCCEED)
        percent = 10 + int(89 * now / end) if moving else 50
        return attrs.evolve(
            make_task(task.id, TaskStatus.PROCESSING), raw={"progress": f"{percent}%"}
        )

    checks = 0

    async def counted(task: Task) -> Task:
        nonlocal checks
        checks += 1
        return await fetch(task)

    policy = PollPolicy(use_progress=use_progress)
    scheduler = PollScheduler(counted, clock=clock, policy=policy, rng=random.Random(3))
    for task_id in finish_at:
        scheduler.add(make_task(task_id))
    scheduler.close()
    results = await collect(scheduler, clock)
    return checks, max(when - finish_at[task.id] for when, task in results)


async def test_progress_buys_fewer_checks_at_the_same_latency() -> None:
    """A moving progress field lets the scheduler skip ahead; a stuck one changes nothing."""
    plain, plain_worst = await _checks_with_progress(use_progress=False, moving=True)
    guided, guided_worst = await _checks_with_progress(use_progress=True, moving=True)
    stuck, _ = await _checks_with_progress(use_progress=True, moving=False)
    assert guided < 0.7 * plain
    assert guided_worst <= max(plain_worst, 10) + 1e-6
    assert stuck == plain


async def test_waiting_submitters_refresh_only_tasks_that_may_have_finished() -> None:
    """A submitter waiting for a slot looks at the running task once per detect_gap, and not
    before its kind of request can have finished: a few GETs, not one per min_interval."""
    timeline = Timeline(queue_seconds=0.0, processing_seconds=0.6)
    policy = PollPolicy(expected=(0.4, 2.0), detect_gap=0.1, first_delay=0.01, min_interval=0.01)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline, max_active_tasks=1) as server,
        kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=FAST_RETRY,
            poll=policy,
            rate=None,
            max_active_tasks=1,
        ) as client,
    ):
        first = await client.submit(TextToVideo(prompt="first"))
        with anyio.fail_after(10):
            second = await client.submit(TextToVideo(prompt="second"))  # waits for first
        assert second.id != first.id
        queries = [r for r in server.requests_to("api") if r.method == "GET"]
        # 0.6 s task, window from 0.4 s, one look per 0.1 s: about 3; per min_interval: ~60.
        assert 1 <= len(queries) <= 6
        assert client._refresh_interval() == 0.1
