"""Task slots: how many tasks the client lets run at once on the account.

Kling limits the number of unfinished tasks per account and rejects a create beyond it with code
1303 (:class:`~kling_async.errors.ConcurrencyLimitError`). A :class:`SlotPool` keeps submissions
under that limit: a submission acquires a slot before its create request and the slot is released
when the task finishes (or when the create definitely did not create a task).

Other programs may use the same account, so the real limit can be lower than configured. On a
1303 the pool shrinks its usable limit to what is running right now, and grows it back, one slot
per release, once no 1303 has been seen for ``recovery_seconds``.

The 1303 protocol for a submitter that holds a slot::

    await slots.acquire()
    try:
        task = await create(...)
    except ConcurrencyLimitError:
        slots.on_concurrency_limited()   # 1. shrink to what runs, not counting this submission
        slots.release()                  # 2. no task was created: give the slot back
        ...                              # 3. await slots.acquire() again and retry

Shrinking first matters: a slot released into a pool that is still too large goes straight to
the next waiter, whose create then meets a 1303 too, and so on down the queue.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Protocol

import anyio
import anyio.lowlevel

from .clock import Clock, SystemClock
from .errors import ConfigurationError
from .events import ConcurrencyLimited, EventSink, emit

__all__ = ["SlotPool", "TaskSlots"]

_log = logging.getLogger("kling_async.slots")


class TaskSlots(Protocol):
    """What the client needs from a pool of task slots."""

    @property
    def in_use(self) -> int:
        """Slots held right now."""
        ...

    @property
    def limit(self) -> int | None:
        """The number of slots that may be held at once now; ``None`` for no limit."""
        ...

    async def acquire(self) -> None:
        """Wait for a free slot (call before a create request)."""
        ...

    def release(self) -> None:
        """Give a slot back: its task finished, or its create definitely created nothing."""
        ...

    def on_concurrency_limited(self) -> None:
        """Report a 1303 answer, before releasing the rejected submission's slot."""
        ...


class SlotPool:
    """A FIFO-fair counting pool of task slots that adapts to 1303 answers.

    * ``max_active=None`` means no limit of our own; slots are still counted, and a 1303 still
      imposes a limit until it recovers.
    * Waiters are served in arrival order; a freed slot is handed straight to the oldest waiter,
      so a newcomer can never overtake it.
    * On a 1303 the submitter first calls :meth:`on_concurrency_limited`, still holding its
      slot: the usable limit becomes ``max(1, in_use - 1)``, the tasks running now. Then it
      calls :meth:`release` (no task was created), which therefore hands the slot to no waiter.
    * Once ``recovery_seconds`` have passed since the last 1303, each :meth:`release` raises the
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
            clock: the time source for recovery; :class:`~kling_async.clock.SystemClock` when
                omitted.
            events: receives a :class:`~kling_async.events.ConcurrencyLimited` event per 1303.
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

    @property
    def max_active(self) -> int | None:
        """The configured limit (``None``: none)."""
        return self._max_active

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
        """Callers waiting in :meth:`acquire`."""
        return len(self._waiters)

    async def acquire(self) -> None:
        """Wait for a free slot, first come first served.

        Cancelling a waiting caller removes it from the queue; if a slot had just been handed to
        it, the slot is passed on.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        if not self._waiters and self._has_room():
            self._in_use += 1
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        waiter = anyio.Event()
        self._waiters.append(waiter)
        try:
            await waiter.wait()
        except BaseException:
            if waiter.is_set():
                # The slot was already ours: pass it on rather than leak it.
                self.release()
            else:
                self._waiters.remove(waiter)
            raise

    def adopt(self, n: int = 1) -> None:
        """Count *n* tasks that are already running (a resumed batch) without waiting.

        This may take the pool above its limit; new acquirers then wait until enough adopted
        tasks are released.

        Args:
            n: how many running tasks to count (>= 0).

        Raises:
            ValueError: *n* is negative.
        """
        if n < 0:
            raise ValueError(f"cannot adopt a negative number of tasks ({n})")
        self._in_use += n

    def release(self) -> None:
        """Give a slot back and hand it to the oldest waiter, if the limit allows.

        Raises:
            RuntimeError: no slot is held.
        """
        if self._in_use <= 0:
            raise RuntimeError("SlotPool.release() called more times than acquire()/adopt()")
        self._in_use -= 1
        if self._limit != self._max_active and self._recovered():
            if self._limit is not None and (self._max_active is not None or self._waiters):
                self._limit += 1
            else:
                self._limit = self._max_active
            if self._limit == self._max_active:
                _log.info("task slots recovered to %s", self._limit or "unlimited")
        self._dispatch()

    def on_concurrency_limited(self) -> None:
        """Shrink the usable limit after a 1303 answer.

        Call it while the rejected submission still holds its slot, then :meth:`release` that
        slot and :meth:`acquire` again to queue the retry (at the back of the queue).
        """
        self._limited_at = self._clock.now()
        # The caller's own slot is about to come back: it is not a running task.
        limit = max(1, self._in_use - 1)
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
