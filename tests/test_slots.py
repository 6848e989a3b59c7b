"""Task slots: the limit holds under contention, 1303 shrinks it, quiet time restores it."""

from __future__ import annotations

import random

import anyio
import pytest

from kling_async.errors import ConfigurationError
from kling_async.events import ConcurrencyLimited, Event
from kling_async.slots import SlotLease, SlotPool, TaskSlots
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
        lease = await pool.acquire()
        try:
            active += 1
            peak = max(peak, active)
            assert pool.in_use <= 5
            await clock.sleep(duration)
        finally:
            active -= 1
            await pool.release(lease)
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
        lease = await pool.acquire()
        order.append(i)
        await clock.sleep(1)
        await pool.release(lease)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(job, i)
            await clock.advance(0)
        await clock.advance(20)
    assert order == list(range(10))


async def test_unlimited_still_counts() -> None:
    """With no limit nobody waits, but in_use is tracked."""
    pool = SlotPool(None)
    held = [await pool.acquire() for _ in range(100)]
    assert pool.in_use == 100
    await pool.release(held[0])
    assert pool.in_use == 99
    await pool.release(held[0])  # a lease is released once; again does nothing
    assert pool.in_use == 99
    assert repr(held[0]) == f"SlotLease({held[0].id!r}, released)"


async def test_1303_shrinks_then_recovers_after_quiet_period() -> None:
    """A 1303 shrinks the limit to what runs; quiet time plus releases grow it back."""
    clock = FakeClock()
    seen: list[Event] = []
    pool = SlotPool(6, clock=clock, events=seen.append, recovery_seconds=30)
    held = [await pool.acquire() for _ in range(5)]
    # The sixth create got 1303: it reports, then releases its slot.
    held.append(await pool.acquire())
    await pool.on_concurrency_limited()
    await pool.release(held.pop())
    assert pool.limit == 5
    assert seen == [ConcurrencyLimited(limit=5)]

    # Nothing free: the retry waits.
    retried = anyio.Event()

    async def retry() -> None:
        held.append(await pool.acquire())
        retried.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(retry)
        await clock.advance(0)
        assert pool.waiting == 1
        await pool.release(held.pop(0))  # t=0: within the quiet period, the limit stays at 5
        await clock.advance(0)
        assert retried.is_set()
    assert pool.limit == 5
    assert pool.in_use == 5

    await clock.advance(10)
    await pool.release(held.pop(0))
    assert pool.limit == 5  # 10 s is not quiet enough
    await clock.advance(25)
    await pool.release(held.pop(0))
    assert pool.limit == 6  # one step per release...
    await pool.release(held.pop(0))
    assert pool.limit == 6  # ...never above max_active
    assert pool.in_use == 2


async def test_1303_shrink_never_below_one_and_blocks_new_acquirers() -> None:
    """With nothing running the limit is 1; the usable limit is never exceeded."""
    clock = FakeClock()
    pool = SlotPool(4, clock=clock, recovery_seconds=5)
    held: list[SlotLease] = []
    held.append(await pool.acquire())
    await pool.on_concurrency_limited()
    await pool.release(held.pop())
    assert pool.limit == 1
    got = 0

    async def one() -> None:
        nonlocal got
        held.append(await pool.acquire())
        got += 1

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
        await clock.advance(1)
        assert got == 1
        assert pool.in_use == 1
        await clock.advance(10)
        await pool.release(held.pop(0))  # quiet for 11 s: limit 2, and the freed slot goes on
        await clock.advance(0)
        assert pool.limit == 2
        assert got == 3
        assert pool.in_use == 2


async def test_unlimited_pool_shrinks_and_lifts() -> None:
    """Even without a configured limit a 1303 imposes one; it is lifted once nobody waits."""
    clock = FakeClock()
    pool = SlotPool(None, clock=clock, recovery_seconds=1)
    held = [await pool.acquire() for _ in range(4)]
    await pool.on_concurrency_limited()  # the fourth create got 1303
    await pool.release(held.pop())
    assert pool.limit == 3
    await clock.advance(2)
    await pool.release(held.pop(0))
    assert pool.limit is None


async def test_adopt_counts_running_tasks_without_waiting() -> None:
    """Adopted tasks occupy slots: new acquirers wait until enough of them are released."""
    clock = FakeClock()
    pool = SlotPool(2, clock=clock)
    held = [await pool.adopt() for _ in range(3)]
    assert pool.in_use == 3
    got = anyio.Event()

    async def one() -> None:
        held.append(await pool.acquire())
        got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        await clock.advance(0)
        await pool.release(held.pop(0))
        await clock.advance(0)
        assert not got.is_set()  # 2 in use, limit 2
        await pool.release(held.pop(0))
        await clock.advance(0)
        assert got.is_set()
    assert pool.in_use == 2


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    """Cancelling a queued acquirer removes it; a slot handed over at the same time is not lost."""
    clock = FakeClock()
    pool = SlotPool(1, clock=clock)
    held: list[SlotLease] = []
    held.append(await pool.acquire())
    got: list[str] = []
    scopes = {name: anyio.CancelScope() for name in "abc"}

    async def one(name: str) -> None:
        with scopes[name]:
            held.append(await pool.acquire())
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
        await pool.release(held.pop(0))
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
    held = [await pool.acquire() for _ in range(4)]
    got = 0

    async def waiter() -> None:
        nonlocal got
        held.append(await pool.acquire())
        got += 1

    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(waiter)
        await clock.advance(0)
        assert pool.waiting == 2
        await pool.on_concurrency_limited()  # the fourth create was refused: 3 tasks run
        await pool.release(held.pop(0))
        await clock.advance(0)
        assert (pool.limit, pool.in_use, pool.waiting, got) == (3, 3, 2, 0)
        await pool.release(held.pop(0))  # a task finished: one waiter may go
        await clock.advance(0)
        assert (pool.in_use, pool.waiting, got) == (3, 1, 1)
        tg.cancel_scope.cancel()


async def test_hold_gives_the_slot_back_unless_kept() -> None:
    """``async with pool.hold()`` releases at the end of the block, also when it is cancelled."""
    pool = SlotPool(1)
    async with pool.hold() as lease:
        assert pool.in_use == 1
        assert repr(lease) == f"SlotLease({lease.id!r}, held)"
    assert (pool.in_use, lease.released) == (0, True)
    with anyio.CancelScope() as scope:
        async with pool.hold():
            scope.cancel()
            await anyio.sleep(1)
    assert pool.in_use == 0
    async with pool.hold() as kept:
        kept.keep()
    assert pool.in_use == 1
    assert repr(kept).endswith("kept)")
    assert repr(pool) == "SlotPool(in_use=1, limit=1, max_active=1, waiting=0)"
    await pool.release(kept)
    assert pool.in_use == 0
