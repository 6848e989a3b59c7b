"""The one retry loop (``RetryPolicy.attempts``) and deadlines on the injected clock."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from kling_async.clock import SystemClock
from kling_async.errors import BadRequestError, RateLimitError, ServerError
from kling_async.retry import RetryPolicy, retry_after_of
from kling_async.testing.clock import FakeClock


async def test_retries_with_backoff_on_the_injected_clock() -> None:
    clock = FakeClock()
    seen: list[float] = []
    retried: list[tuple[str, int, float]] = []
    async with clock.autojump():
        async for attempt in RetryPolicy(jitter=0).attempts(
            clock, on_retry=lambda exc, n, delay: retried.append((type(exc).__name__, n, delay))
        ):
            with attempt:
                seen.append(clock.now())
                if len(seen) < 4:
                    raise ServerError("busy", status=503)
    assert seen == [0.0, 1.0, 3.0, 7.0]
    assert retried == [("ServerError", 1, 1.0), ("ServerError", 2, 2.0), ("ServerError", 3, 4.0)]


async def test_retry_after_replaces_the_backoff() -> None:
    clock = FakeClock()
    seen: list[float] = []
    async with clock.autojump():
        async for attempt in RetryPolicy(jitter=0).attempts(clock):
            with attempt:
                seen.append(clock.now())
                if len(seen) == 1:
                    raise RateLimitError("slow down", status=429, retry_after=9.5)
    assert seen == [0.0, 9.5]


async def test_a_permanent_error_propagates_at_once() -> None:
    clock = FakeClock()
    calls = 0

    async def run() -> None:
        nonlocal calls
        async for attempt in RetryPolicy().attempts(clock):
            with attempt:
                calls += 1
                raise BadRequestError("bad field", status=400)

    with pytest.raises(BadRequestError):
        await run()
    assert calls == 1
    assert clock.now() == 0.0


async def test_the_budget_ends_with_the_last_error() -> None:
    clock = FakeClock()
    calls = 0

    async def run() -> None:
        nonlocal calls
        async with clock.autojump():
            async for attempt in RetryPolicy(max_retries=2, jitter=0).attempts(clock):
                with attempt:
                    calls += 1
                    raise ServerError(f"try {calls}", status=500)

    with pytest.raises(ServerError, match="try 3"):
        await run()
    assert calls == 3
    assert clock.now() == 3.0


async def test_skip_wait_and_a_custom_predicate() -> None:
    clock = FakeClock()
    calls = 0
    async for attempt in RetryPolicy().attempts(clock, should_retry=lambda exc, n: n < 1):
        with attempt:
            calls += 1
            if calls == 1:
                attempt.skip_wait()
                raise ValueError("once")
    assert calls == 2
    assert clock.now() == 0.0


async def test_leaving_the_block_by_return_ends_the_loop() -> None:
    async def once() -> int:
        async for attempt in RetryPolicy().attempts(FakeClock()):
            with attempt:
                return attempt.retries_done
        raise AssertionError("unreachable")

    assert await once() == 0


def test_retry_after_of() -> None:
    assert retry_after_of(RateLimitError("x", status=429, retry_after=2.0)) == 2.0
    assert retry_after_of(ValueError("x")) is None


async def test_fake_clock_deadline_cancels_on_virtual_time() -> None:
    clock = FakeClock()
    async with clock.autojump():
        with clock.deadline(30) as scope:
            await clock.sleep(3600)
    assert scope.cancelled_caught
    assert clock.now() == 30.0
    assert clock.sleepers == 0


async def test_fake_clock_deadline_not_reached_and_none() -> None:
    clock = FakeClock()
    async with clock.autojump():
        with clock.deadline(30) as scope:
            await clock.sleep(10)
        with clock.deadline(None) as forever:
            await clock.sleep(100)
    assert not scope.cancelled_caught
    assert not forever.cancelled_caught
    assert clock.now() == 110.0


async def test_fake_clock_deadline_by_hand_and_zero() -> None:
    clock = FakeClock()
    done = anyio.Event()

    async def body() -> None:
        with clock.deadline(5):
            await anyio.Event().wait()
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(body)
        await clock.advance(4.9)
        assert not done.is_set()
        await clock.advance(0.1)
        assert done.is_set()
    with clock.deadline(0) as scope:
        await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught


async def test_system_clock_deadline_is_wall_time() -> None:
    with SystemClock().deadline(0.01) as scope:
        await anyio.sleep(5)
    assert scope.cancelled_caught
