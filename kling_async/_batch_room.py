"""When a batch lets its next submission through: only when a task slot is free for it.

A submitter waiting inside ``client.submit`` refreshes the client's active tasks itself (it
cannot know that the batch's watcher polls them already); many such waiters would spend the
rate limit on duplicate polls. So the batch holds submissions back until the pool has room,
counting those let through but not answered yet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from .clock import Clock
from .slots import TaskSlots

__all__ = ["Room"]


class Room:
    """The gate in front of a batch's submissions (strictly private).

    Args:
        slots: the client's task slots.
        clock: where the safety-net wait runs.
        recheck: seconds after which a waiter looks again without being woken (slots freed
            by another user of the same client wake nobody here).
    """

    def __init__(self, slots: TaskSlots, clock: Clock, recheck: Callable[[], float]) -> None:
        self._slots = slots
        self._clock = clock
        self._recheck = recheck
        # Submissions let through that may not hold their slot yet.
        self._reserved = 0
        self._changed = anyio.Event()

    def signal(self) -> None:
        """Wake the waiters: a task finished or a submission was answered."""
        self._changed.set()
        self._changed = anyio.Event()

    @asynccontextmanager
    async def enter(self) -> AsyncIterator[None]:
        """Wait until a submission would get a task slot at once; hold the place meanwhile."""
        slots = self._slots
        while True:
            limit = slots.limit
            if limit is None or (slots.in_use + self._reserved < limit and not slots.waiting):
                break
            with self._clock.deadline(self._recheck()):
                await self._changed.wait()
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1
            self.signal()
