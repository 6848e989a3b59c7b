"""Task slots: how many tasks the client lets run at once on the account.

Kling limits the number of unfinished tasks per account and rejects a create beyond it with code
1303 ([`ConcurrencyLimitError`][kling_async.errors.ConcurrencyLimitError]). A [`SlotPool`][kling_async.slots.SlotPool] keeps submissions
under that limit: a submission acquires a slot before its create request and the slot is released
when the task finishes (or when the create definitely did not create a task).

Other programs may use the same account, so the real limit can be lower than configured. On a
1303 the pool shrinks its usable limit to what is running right now, and grows it back, one slot
per release, once no 1303 has been seen for ``recovery_seconds``.

The 1303 protocol for a submitter that holds a slot::

    lease = await slots.acquire()
    try:
        task = await create(...)
    except ConcurrencyLimitError:
        await slots.on_concurrency_limited()  # 1. shrink to what runs, not counting this one
        await slots.release(lease)            # 2. no task was created: give the slot back
        ...                                   # 3. await slots.acquire() again and retry

Shrinking first matters: a slot released into a pool that is still too large goes straight to
the next waiter, whose create then meets a 1303 too, and so on down the queue.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import anyio
import anyio.lowlevel

from .clock import Clock, SystemClock
from .errors import ConfigurationError
from .events import ConcurrencyLimited, EventSink, emit

__all__ = ["SlotLease", "SlotPool", "TaskSlots", "hold_slot"]

_log = logging.getLogger("kling_async.slots")


class SlotLease:
    """One task slot, held from [`TaskSlots.acquire`][kling_async.slots.TaskSlots.acquire] until [`TaskSlots.release`][kling_async.slots.TaskSlots.release].

    A lease is the holder's receipt: release it exactly once (a second release does nothing).
    A pool that lives outside the process ([`RedisStore`][kling_async.redis_store.RedisStore]) renews
    the leases it handed out while the process lives, so a process that dies gives its slots
    back after the lease's time-to-live.
    """

    __slots__ = ("id", "kept", "released")

    def __init__(self, lease_id: str | None = None) -> None:
        """Create a lease.

        Args:
            lease_id: a unique id; a random one when omitted.
        """
        self.id = lease_id if lease_id is not None else uuid.uuid4().hex
        """Unique among the leases of one pool."""
        self.kept = False
        """Set by [`keep`][kling_async.slots.SlotLease.keep]: the slot outlives the [`TaskSlots.hold`][kling_async.slots.TaskSlots.hold] block."""
        self.released = False
        """Set by the pool when the slot is given back."""

    def keep(self) -> None:
        """Keep the slot after the [`TaskSlots.hold`][kling_async.slots.TaskSlots.hold] block: a task now occupies it."""
        self.kept = True

    def __repr__(self) -> str:
        state = "released" if self.released else "kept" if self.kept else "held"
        return f"SlotLease({self.id!r}, {state})"


class TaskSlots(Protocol):
    """What the client needs from a pool of task slots.

    Every method that reports to the pool is a coroutine, so a pool shared between processes
    can implement it with a network round trip.
    """

    @property
    def in_use(self) -> int:
        """Slots held right now (by this process, for a shared pool)."""
        ...

    @property
    def limit(self) -> int | None:
        """The number of slots that may be held at once now; ``None`` for no limit."""
        ...

    @property
    def waiting(self) -> int:
        """Callers of this process waiting in [`acquire`][kling_async.slots.TaskSlots.acquire]."""
        ...

    async def acquire(self) -> SlotLease:
        """Wait for a free slot (call before a create request); returns its lease."""
        ...

    async def adopt(self) -> SlotLease:
        """Count a task that is already running (a resumed batch) without waiting."""
        ...

    async def release(self, lease: SlotLease) -> None:
        """Give a slot back: its task finished, or its create definitely created nothing.

        Releasing a lease twice does nothing.
        """
        ...

    async def on_concurrency_limited(self, held: int = 1) -> None:
        """Report a 1303 answer, before releasing the rejected submission's *held* slots (more
        than one for an image request of ``n`` images)."""
        ...

    async def bind(self, lease: SlotLease, task_id: str) -> None:
        """Note that *lease* is held by task *task_id*, so that [`release_task`][kling_async.slots.TaskSlots.release_task] finds it."""
        ...

    async def release_task(self, task_id: str) -> None:
        """Release the lease bound to *task_id*, whichever process holds it (if any)."""
        ...

    def hold(self) -> AbstractAsyncContextManager[SlotLease]:
        """Hold a slot for a block: released at its end unless [`SlotLease.keep`][kling_async.slots.SlotLease.keep] was called."""
        ...


@asynccontextmanager
async def hold_slot(slots: TaskSlots) -> AsyncIterator[SlotLease]:
    """[`TaskSlots.hold`][kling_async.slots.TaskSlots.hold] for any pool: acquire, and release at the end unless kept.

    Args:
        slots: the pool to hold a slot of.
    """
    lease = await slots.acquire()
    try:
        yield lease
    finally:
        if not lease.kept:
            # Shielded: a cancelled holder must still give its slot back.
            with anyio.CancelScope(shield=True):
                await slots.release(lease)


class SlotPool:
    """A FIFO-fair counting pool of task slots that adapts to 1303 answers.

    * ``max_active=None`` means no limit of our own; slots are still counted, and a 1303 still
      imposes a limit until it recovers.
    * Waiters are served in arrival order; a freed slot is handed straight to the oldest waiter,
      so a newcomer can never overtake it.
    * On a 1303 the submitter first calls [`on_concurrency_limited`][kling_async.slots.SlotPool.on_concurrency_limited], still holding its
      slot: the usable limit becomes ``max(1, in_use - 1)``, the tasks running now. Then it
      calls [`release`][kling_async.slots.SlotPool.release] (no task was created), which therefore hands the slot to no waiter.
    * Once ``recovery_seconds`` have passed since the last 1303, each [`release`][kling_async.slots.SlotPool.release] raises the
      usable limit by one, back up to *max_active*. Without *max_active*, the limit is lifted
      entirely at a recovering release that finds nobody waiting.
    """

    def __init__(
        self,
        max_active: int | None,
        *,
        clock: Clock | None = None,
        events: EventSink | None = None,
        recovery_seconds: float = 30.0,
    ) -> None:
        """Create a pool.

        Args:
            max_active: the most tasks to run at once (>= 1), or ``None`` for no limit.
            clock: the time source for recovery; [`SystemClock`][kling_async.clock.SystemClock] when
                omitted.
            events: receives a [`ConcurrencyLimited`][kling_async.events.ConcurrencyLimited] event per 1303.
            recovery_seconds: how long no 1303 must be seen before the limit grows again.

        Raises:
            ConfigurationError: a parameter is out of range.
        """
        if max_active is not None and (
            isinstance(max_active, bool) or not isinstance(max_active, int) or max_active < 1
        ):
            raise ConfigurationError(
                f"max_active must be an integer >= 1 or None, got {max_active!r}"
            )
        if recovery_seconds < 0:
            raise ConfigurationError(f"recovery_seconds must be >= 0, got {recovery_seconds!r}")
        self._max_active = max_active
        self._limit = max_active
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._events = events
        self._recovery_seconds = recovery_seconds
        self._limited_at = float("-inf")
        self._in_use = 0
        self._waiters: deque[anyio.Event] = deque()

    def __repr__(self) -> str:
        return (
            f"SlotPool(in_use={self._in_use}, limit={self._limit}, "
            f"max_active={self._max_active}, waiting={len(self._waiters)})"
        )

    @property
    def limit(self) -> int | None:
        """The usable limit now: *max_active*, or less after a 1303; ``None`` for no limit."""
        return self._limit

    @property
    def in_use(self) -> int:
        """Slots held right now (including adopted ones)."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Callers waiting in [`acquire`][kling_async.slots.SlotPool.acquire]."""
        return len(self._waiters)

    async def acquire(self) -> SlotLease:
        """Wait for a free slot, first come first served; returns its lease.

        Cancelling a waiting caller removes it from the queue; if a slot had just been handed to
        it, the slot is passed on.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        if not self._waiters and self._has_room():
            self._in_use += 1
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return SlotLease()
        waiter = anyio.Event()
        self._waiters.append(waiter)
        try:
            await waiter.wait()
        except BaseException:
            if waiter.is_set():
                # The slot was already ours: pass it on rather than leak it.
                self._release()
            else:
                self._waiters.remove(waiter)
            raise
        return SlotLease()

    async def adopt(self) -> SlotLease:
        """Count a task that is already running (a resumed batch) without waiting.

        This may take the pool above its limit; new acquirers then wait until enough adopted
        tasks are released.
        """
        self._in_use += 1
        return SlotLease()

    def hold(self) -> AbstractAsyncContextManager[SlotLease]:
        """Hold a slot for a block: released at its end unless [`SlotLease.keep`][kling_async.slots.SlotLease.keep] was called."""
        return hold_slot(self)

    async def release(self, lease: SlotLease) -> None:
        """Give a slot back and hand it to the oldest waiter, if the limit allows.

        Args:
            lease: the slot's lease; releasing it twice does nothing.
        """
        if lease.released:
            return
        lease.released = True
        self._release()

    def _release(self) -> None:
        if self._in_use <= 0:  # pragma: no cover - every lease is counted once
            raise RuntimeError("SlotPool released more slots than it handed out")
        self._in_use -= 1
        if self._limit != self._max_active and self._recovered():
            if self._limit is not None and (self._max_active is not None or self._waiters):
                self._limit += 1
            else:
                self._limit = self._max_active
            if self._limit == self._max_active:
                _log.info("task slots recovered to %s", self._limit or "unlimited")
        self._dispatch()

    async def bind(self, lease: SlotLease, task_id: str) -> None:
        """Nothing to do: in one process the client keeps each task's lease itself.

        Args:
            lease: the task's lease.
            task_id: the task.
        """

    async def release_task(self, task_id: str) -> None:
        """Nothing to do: no other process can hold a lease of this pool.

        Args:
            task_id: a task that finished.
        """

    async def on_concurrency_limited(self, held: int = 1) -> None:
        """Shrink the usable limit after a 1303 answer.

        Call it while the rejected submission still holds its *held* slots, then [`release`][kling_async.slots.SlotPool.release] them
        and [`acquire`][kling_async.slots.SlotPool.acquire] again to queue the retry (at the back of the queue).
        """
        self._limited_at = self._clock.now()
        # The caller's own slots are about to come back: they are not running tasks.
        limit = max(1, self._in_use - held)
        if self._limit is None or limit < self._limit:
            self._limit = limit
            _log.warning("too many tasks running on the account: using at most %d slots", limit)
        emit(self._events, ConcurrencyLimited(limit=self._limit))

    def _recovered(self) -> bool:
        return self._clock.now() - self._limited_at >= self._recovery_seconds

    def _has_room(self) -> bool:
        return self._limit is None or self._in_use < self._limit

    def _dispatch(self) -> None:
        while self._waiters and self._has_room():
            self._in_use += 1
            self._waiters.popleft().set()
