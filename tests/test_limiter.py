"""The shared rate limiter, on virtual time: rate bound, shared cool-down, AIMD, fairness."""

from __future__ import annotations

import logging

import anyio
import pytest

from kling_async.errors import ConfigurationError
from kling_async.events import Event, RateLimited
from kling_async.limiter import RateLimit, TokenBucketLimiter, UnlimitedLimiter
from kling_async.testing.clock import FakeClock

# Token refills are float arithmetic; allow a few ulps in the window bound.
TOLERANCE = 1e-6


def max_excess(times: list[float], rate: float, burst: int) -> float:
    """The worst ``count - (burst + rate * span)`` over all windows [times[i], times[j]]."""
    times = sorted(times)
    worst = float("-inf")
    for i in range(len(times)):
        for j in range(i, len(times)):
            count = j - i + 1
            worst = max(worst, count - (burst + rate * (times[j] - times[i])))
    return worst


async def test_rate_limit_validation() -> None:
    """Nonsense limits are rejected with a ConfigurationError (a ValueError)."""
    with pytest.raises(ConfigurationError, match="per_second"):
        RateLimit(per_second=0)
    with pytest.raises(ValueError, match="burst"):
        RateLimit(per_second=1, burst=0)
    with pytest.raises(ConfigurationError, match="min_rate_fraction"):
        TokenBucketLimiter(RateLimit(1), min_rate_fraction=0)


async def test_never_exceeds_burst_plus_rate_times_window() -> None:
    """200 acquisitions by 20 coroutines: no window holds more than burst + rate * T."""
    clock = FakeClock()
    limit = RateLimit(per_second=10, burst=5)
    limiter = TokenBucketLimiter(limit, clock=clock)
    times: list[float] = []

    async def worker() -> None:
        for _ in range(10):
            await limiter.acquire()
            times.append(clock.now())

    async with clock.autojump(), anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(worker)

    assert len(times) == 200
    assert max_excess(times, limit.per_second, limit.burst) <= TOLERANCE
    # It is also not needlessly slow: 5 at once, then 195 more at 10/s.
    assert clock.now() == pytest.approx(19.5)
    assert limiter.stats.acquired == 200
    assert limiter.stats.waited >= 195


async def test_bound_holds_across_idle_gaps_and_cooldowns() -> None:
    """Bursts after idle spells and pauses still respect the bound (tokens cap at burst)."""
    clock = FakeClock()
    limit = RateLimit(per_second=4, burst=3)
    limiter = TokenBucketLimiter(limit, clock=clock, cooldown=2.0)
    times: list[float] = []

    async def burst_of(n: int) -> None:
        for _ in range(n):
            await limiter.acquire()
            times.append(clock.now())

    async with clock.autojump():
        await burst_of(10)
        await clock.sleep(30)
        await burst_of(10)
        await limiter.on_rate_limited()
        await burst_of(10)
        await clock.sleep(100)
        for _ in range(30):
            await limiter.on_success()
        await burst_of(20)

    assert max_excess(times, limit.per_second, limit.burst) <= TOLERANCE


async def test_one_report_pauses_every_acquirer() -> None:
    """A single 429 seen by one coroutine holds back all ten, until the pause ends."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(RateLimit(per_second=100, burst=10), clock=clock)
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(clock.now())

    await limiter.on_rate_limited(retry_after=5.0)
    assert limiter.paused_until == 5.0
    async with clock.autojump(), anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(one)

    assert len(times) == 10
    assert min(times) == pytest.approx(5.0)
    # The bucket restarts with one token after a pause: the rest follow at the lowered rate.
    assert limiter.current_rate == 50
    assert max(times) == pytest.approx(5.0 + 9 / 50)


async def test_simultaneous_reports_share_one_cooldown() -> None:
    """Ten 429s at about the same time: one cool-down to the longest delay, one halving."""
    clock = FakeClock()
    seen: list[Event] = []
    limiter = TokenBucketLimiter(
        RateLimit(per_second=8, burst=4), clock=clock, cooldown=1.0, events=seen.append
    )
    for i in range(10):
        await limiter.on_rate_limited(retry_after=None if i % 2 else float(i + 1))
    assert limiter.paused_until == 9.0  # the longest, not the sum
    assert limiter.stats.cooldowns == 1
    assert limiter.stats.decreases == 1
    assert limiter.current_rate == 4
    assert seen == [RateLimited(delay=1.0, rate=4.0)]

    async with clock.autojump():
        await limiter.acquire()
    assert clock.now() == 9.0


async def test_reports_waiting_coroutines_all_wait_for_the_pause() -> None:
    """Coroutines already queued when a 429 arrives wait for the pause too, including the head."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(RateLimit(per_second=1, burst=1), clock=clock)
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(clock.now())

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one)
        await clock.advance(0)
        assert times == [0.0]
        await clock.advance(0.5)
        await limiter.on_rate_limited(retry_after=10)
        await clock.advance(100)
    # Paused until 10.5. The half token left at the report carries over (no refill during the
    # pause), so the head waits one more second at the halved rate of 0.5/s, the rest 2 s each.
    assert times == [0.0, 11.5, 13.5, 15.5]


async def test_aimd_decrease_floor_and_slow_recovery(caplog: pytest.LogCaptureFixture) -> None:
    """Each cool-down halves the rate down to the floor; successes bring it back step by step."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(
        RateLimit(per_second=10),
        clock=clock,
        cooldown=1.0,
        min_rate_fraction=0.2,
        recovery_per_success=0.5,
    )
    rates = []
    with caplog.at_level(logging.INFO, logger="kling_async.limiter"):
        for _ in range(4):
            await limiter.on_rate_limited()
            rates.append(limiter.current_rate)
            await clock.advance(1.0)  # let the cool-down end, so the next report counts
        assert rates == [5.0, 2.5, 2.0, 2.0]
        assert limiter.stats.decreases == 3
        assert limiter.stats.cooldowns == 4
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 4
        assert "lowering the rate" in warnings[0].getMessage()

        await limiter.on_success()
        assert limiter.current_rate == 2.5
        for _ in range(14):
            await limiter.on_success()
        assert limiter.current_rate == pytest.approx(9.5)
        assert not [r for r in caplog.records if r.levelno == logging.INFO]
        await limiter.on_success()
        await limiter.on_success()
        assert limiter.current_rate == 10.0
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert "recovered" in infos[0].getMessage()


async def test_successes_during_a_cooldown_do_not_recover() -> None:
    """Answers to requests sent before the 429 must not undo the decrease."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(RateLimit(per_second=10), clock=clock, cooldown=5.0)
    await limiter.on_rate_limited()
    for _ in range(100):
        await limiter.on_success()
    assert limiter.current_rate == 5.0
    await clock.advance(5.0)
    await limiter.on_success()
    assert limiter.current_rate == pytest.approx(5.2)


async def test_fifo_fairness() -> None:
    """Waiters are served in the order they arrived, whatever the timing."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(RateLimit(per_second=1, burst=1), clock=clock)
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(one, i)
            await clock.advance(0.1)  # make arrival order unambiguous
        await clock.advance(20)
    assert order == list(range(12))


async def test_cancelled_waiter_takes_no_token() -> None:
    """A waiter cancelled while at the head of the queue leaves; the next one is served on time."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(RateLimit(per_second=1, burst=1), clock=clock)
    got: list[tuple[str, float]] = []
    doomed = anyio.CancelScope()

    async def first() -> None:
        with doomed:
            await limiter.acquire()
            got.append(("first", clock.now()))

    async def second() -> None:
        await limiter.acquire()
        got.append(("second", clock.now()))

    await limiter.acquire()  # empties the bucket at t=0
    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await clock.advance(0)  # first now sleeps for its token, holding the queue's head
        tg.start_soon(second)
        await clock.advance(0.5)
        doomed.cancel()
        await clock.advance(5)
    assert got == [("second", 1.0)]
    assert limiter.stats.acquired == 2


async def test_unlimited_limiter_never_waits() -> None:
    """The no-op limiter grants everything immediately."""
    limiter = UnlimitedLimiter()
    clock = FakeClock()
    for _ in range(1000):
        await limiter.acquire()
    await limiter.on_rate_limited(30)
    await limiter.on_success()
    await limiter.acquire()
    assert clock.now() == 0


async def test_reprs_show_state() -> None:
    """The limiters' reprs show their live state (rate, tokens, pause, waiters)."""
    limiter = TokenBucketLimiter(RateLimit(per_second=2, burst=3), clock=FakeClock())
    assert repr(limiter) == (
        "TokenBucketLimiter(limit=RateLimit(per_second=2, burst=3), rate=2, tokens=3, "
        "paused_until=-inf, waiting=0)"
    )
    assert repr(UnlimitedLimiter()) == "UnlimitedLimiter()"
