"""Task slots: the limit holds under contention, 1303 shrinks it, quiet time restores it."""

from __future__ import annotations

import random

import anyio
import pytest

from kling_async.errors import ConfigurationError
from kling_async.events import ConcurrencyLimited, Event
from kling_async.slots import SlotPool, TaskSlots
from kling_async.testing.clock import FakeClock


async def test_validation() -> None:
    """A limit below one is a configuration error; None means unlimited."""
    with pytest.raises(ConfigurationError):
        SlotPool(0)
    pool = SlotPool(None)
    assert pool.limit is None
    slots: TaskSlots = pool  # SlotPool implements the protocol
    assert slots.in_use == 0


async def test_fifty_acquirers_never_exceed_the_limit() -> None:
    """50 coroutines holding slots for random virtual times: at most 5 at once, all served."""
    clock = FakeClock()
    pool = SlotPool(5, clock=clock)
    rng = random.Random(1303)
    durations = [rng.uniform(1, 60) for _ in range(50)]
    active = 0
    peak = 0
    done = 0

    async def job(duration: float) -> None:
        nonlocal active, peak, done
        await pool.acquire()
        try:
            active += 1
            peak = max(peak, active)
            assert pool.in_use <= 5
            await clock.sleep(duration)
        finally:
            active -= 1
            pool.release()
        done += 1

    async with clock.autojump(), anyio.create_task_group() as tg:
        for duration in durations:
            tg.start_soon(job, duration)

    assert done == 50
    assert peak == 5
    assert pool.in_use == 0


async def test_fifo_order() -> None:
    """Slots go to waiters in arrival order."""
    clock = FakeClock()
    pool = SlotPool(1, clock=clock)
    order: list[int] = []

    async def job(i: int) -> None:
        await pool.acquire()
        order.append(i)
        await clock.sleep(1)
        pool.release()

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(job, i)
            await clock.advance(0)
        await clock.advance(20)
    assert order == list(range(10))


async def test_unlimited_still_counts() -> None:
    """With no limit nobody waits, but in_use is tracked."""
    pool = SlotPool(None)
    for _ in range(100):
        await pool.acquire()
    assert pool.in_use == 100
    pool.release()
    assert pool.in_use == 99
    with pytest.raises(RuntimeError):
        SlotPool(None).release()


async def test_1303_shrinks_then_recovers_after_quiet_period() -> None:
    """A 1303 shrinks the limit to what runs; quiet time plus releases grow it back."""
    clock = FakeClock()
    seen: list[Event] = []
    pool = SlotPool(6, clock=clock, events=seen.append, recovery_seconds=30)
    for _ in range(5):
        await pool.acquire()
    # The sixth create got 1303: it reports, then releases its slot.
    await pool.acquire()
    pool.on_concurrency_limited()
    pool.release()
    assert pool.limit == 5
    assert seen == [ConcurrencyLimited(limit=5)]

    # Nothing free: the retry waits.
    retried = anyio.Event()

    async def retry() -> None:
        await pool.acquire()
        retried.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(retry)
        await clock.advance(0)
        assert pool.waiting == 1
        pool.release()  # t=0: within the quiet period, the limit stays at 5
        await clock.advance(0)
        assert retried.is_set()
    assert pool.limit == 5
    assert pool.in_use == 5

    await clock.advance(10)
    pool.release()
    assert pool.limit == 5  # 10 s is not quiet enough
    await clock.advance(25)
    pool.release()
    assert pool.limit == 6  # one step per release...
    pool.release()
    assert pool.limit == 6  # ...never above max_active
    assert pool.in_use == 2


async def test_1303_shrink_never_below_one_and_blocks_new_acquirers() -> None:
    """With nothing running the limit is 1; the usable limit is never exceeded."""
    clock = FakeClock()
    pool = SlotPool(4, clock=clock, recovery_seconds=5)
    await pool.acquire()
    pool.on_concurrency_limited()
    pool.release()
    assert pool.limit == 1
    got = 0

    async def one() -> None:
        nonlocal got
        await pool.acquire()
        got += 1

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
        await clock.advance(1)
        assert got == 1
        assert pool.in_use == 1
        await clock.advance(10)
        pool.release()  # quiet for 11 s: limit 2, and the freed slot goes on
        await clock.advance(0)
        assert pool.limit == 2
        assert got == 3
        assert pool.in_use == 2


async def test_unlimited_pool_shrinks_and_lifts() -> None:
    """Even without a configured limit a 1303 imposes one; it is lifted once nobody waits."""
    clock = FakeClock()
    pool = SlotPool(None, clock=clock, recovery_seconds=1)
    for _ in range(4):
        await pool.acquire()
    pool.on_concurrency_limited()  # the fourth create got 1303
    pool.release()
    assert pool.limit == 3
    await clock.advance(2)
    pool.release()
    assert pool.limit is None


async def test_adopt_counts_running_tasks_without_waiting() -> None:
    """Adopted tasks occupy slots: new acquirers wait until enough of them are released."""
    clock = FakeClock()
    pool = SlotPool(2, clock=clock)
    pool.adopt(3)
    assert pool.in_use == 3
    got = anyio.Event()

    async def one() -> None:
        await pool.acquire()
        got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        await clock.advance(0)
        pool.release()
        await clock.advance(0)
        assert not got.is_set()  # 2 in use, limit 2
        pool.release()
        await clock.advance(0)
        assert got.is_set()
    assert pool.in_use == 2
    with pytest.raises(ValueError):
        pool.adopt(-1)


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    """Cancelling a queued acquirer removes it; a slot handed over at the same time is not lost."""
    clock = FakeClock()
    pool = SlotPool(1, clock=clock)
    await pool.acquire()
    got: list[str] = []
    scopes = {name: anyio.CancelScope() for name in "abc"}

    async def one(name: str) -> None:
        with scopes[name]:
            await pool.acquire()
            got.append(name)

    async with anyio.create_task_group() as tg:
        for name in "abc":
            tg.start_soon(one, name)
        await clock.advance(0)
        assert pool.waiting == 3
        scopes["a"].cancel()  # cancelled while queued: simply leaves the queue
        await clock.advance(0)
        assert pool.waiting == 2
        # Hand the slot to "b" and cancel "b" in the same breath. Whether "b" keeps it or passes
        # it to "c" is up to the backend; either way exactly one of them holds it.
        pool.release()
        scopes["b"].cancel()
        await clock.advance(0)
        assert len(got) == 1
        assert got[0] in {"b", "c"}
        assert pool.in_use == 1
        assert pool.waiting == (1 if got == ["b"] else 0)
        tg.cancel_scope.cancel()


async def test_a_refused_slot_does_not_cascade_to_the_waiters() -> None:
    """The slot of a create refused with 1303 goes to nobody: the waiters would be refused too."""
    clock = FakeClock()
    pool = SlotPool(4, clock=clock, recovery_seconds=30)
    for _ in range(4):
        await pool.acquire()
    got = 0

    async def waiter() -> None:
        nonlocal got
        await pool.acquire()
        got += 1

    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(waiter)
        await clock.advance(0)
        assert pool.waiting == 2
        pool.on_concurrency_limited()  # the fourth create was refused: 3 tasks run
        pool.release()
        await clock.advance(0)
        assert (pool.limit, pool.in_use, pool.waiting, got) == (3, 3, 2, 0)
        pool.release()  # a task finished: one waiter may go
        await clock.advance(0)
        assert (pool.in_use, pool.waiting, got) == (3, 1, 1)
        tg.cancel_scope.cancel()
