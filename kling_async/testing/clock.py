"""A virtual clock for tests: sleeping costs no wall time.

[`FakeClock`][kling_async.testing.clock.FakeClock] implements [`kling_async.clock.Clock`][kling_async.clock.Clock]. Code under test sleeps on it as
usual; the test moves time forward, either by hand with [`FakeClock.advance`][kling_async.testing.clock.FakeClock.advance] or
automatically with [`FakeClock.autojump`][kling_async.testing.clock.FakeClock.autojump], which jumps to the next sleeper's wake-up time
whenever every task is blocked. A scenario spanning hours of virtual time then runs in
milliseconds, and the same way every time.

Examples:
    >>> import anyio
    >>> async def main() -> float:
    ...     clock = FakeClock()
    ...     async with clock.autojump():
    ...         await clock.sleep(3600)
    ...     return clock.now()
    >>> anyio.run(main)
    3600.0
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import anyio
import anyio.abc
import anyio.lowlevel

__all__ = ["FakeClock"]


class _Sleeper:
    __slots__ = ("done", "event", "scope", "wake_at")

    def __init__(self, wake_at: float, scope: anyio.CancelScope | None = None) -> None:
        self.wake_at = wake_at
        self.event = anyio.Event()
        # A deadline is a sleeper whose wake-up cancels a scope instead of setting an event.
        self.scope = scope
        # Set when the sleeper was woken or gave up (cancelled): its heap entry is then stale.
        self.done = False


class FakeClock:
    """A [`Clock`][kling_async.clock.Clock] whose time moves only when the test says so.

    Time starts at *start* and never goes backwards. [`sleep`][kling_async.testing.clock.FakeClock.sleep] parks the caller until virtual
    time reaches its wake-up time; sleepers due at the same time wake in the order they started
    sleeping.
    """

    def __init__(self, start: float = 0.0) -> None:
        """Create a clock.

        Args:
            start: the initial virtual time, in seconds.
        """
        self._now = float(start)
        self._heap: list[tuple[float, int, _Sleeper]] = []
        self._seq = itertools.count()
        self._new_sleeper: anyio.Event | None = None

    def now(self) -> float:
        """Return the current virtual time in seconds."""
        return self._now

    @property
    def sleepers(self) -> int:
        """How many tasks are parked in [`sleep`][kling_async.testing.clock.FakeClock.sleep] right now."""
        return sum(1 for _, _, s in self._heap if not s.done and s.scope is None)

    async def sleep(self, seconds: float) -> None:
        """Park the caller until virtual time reaches ``now() + seconds``.

        A zero or negative duration is just a checkpoint (the caller yields once).

        Args:
            seconds: how long to sleep, in virtual seconds.
        """
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(self._now + seconds)
        heapq.heappush(self._heap, (sleeper.wake_at, next(self._seq), sleeper))
        if self._new_sleeper is not None:
            self._new_sleeper.set()
        try:
            await sleeper.event.wait()
        finally:
            # On cancellation the entry stays in the heap but is skipped, so autojump never jumps
            # to the wake-up time of somebody who is no longer waiting.
            sleeper.done = True

    @contextmanager
    def deadline(self, seconds: float | None) -> Iterator[anyio.CancelScope]:
        """A scope cancelled once virtual time reaches ``now() + seconds`` (``None``: never).

        The deadline counts as a sleeper, so [`autojump`][kling_async.testing.clock.FakeClock.autojump]
        jumps to it when everything else is blocked.

        Args:
            seconds: how long the block may run, in virtual seconds.

        Examples:
            >>> import anyio
            >>> async def main() -> tuple[bool, float]:
            ...     clock = FakeClock()
            ...     async with clock.autojump():
            ...         with clock.deadline(5) as scope:
            ...             await clock.sleep(60)
            ...     return scope.cancelled_caught, clock.now()
            >>> anyio.run(main)
            (True, 5.0)
        """
        with anyio.CancelScope() as scope:
            if seconds is None:
                yield scope
                return
            sleeper = _Sleeper(self._now + max(0.0, seconds), scope)
            if seconds <= 0:
                scope.cancel()
                sleeper.done = True
            else:
                heapq.heappush(self._heap, (sleeper.wake_at, next(self._seq), sleeper))
                if self._new_sleeper is not None:
                    self._new_sleeper.set()
            try:
                yield scope
            finally:
                sleeper.done = True

    async def advance(self, seconds: float) -> None:
        """Move time forward by *seconds*, waking sleepers in order.

        Time moves in steps, one per distinct wake-up time. After each step the woken tasks run
        until every task is blocked again, so a task that wakes up and sleeps again within the
        interval is woken again too.

        Args:
            seconds: how far to move, at least 0.

        Raises:
            ValueError: *seconds* is negative.
        """
        if seconds < 0:
            raise ValueError(f"cannot move time backwards (advance({seconds}))")
        target = self._now + seconds
        while True:
            await self.wait_idle()
            due = self._next_wake_at()
            if due is None or due > target:
                break
            self._now = max(self._now, due)
            self._wake_due()
        self._now = max(self._now, target)
        self._wake_due()
        await self.wait_idle()

    def autojump(self) -> _Autojump:
        """Return an async context manager that keeps time moving on its own.

        Inside the ``async with`` block a background task waits until every task is blocked,
        then jumps to the earliest sleeper's wake-up time and wakes it. If nothing sleeps, it
        waits for the next sleeper. Leaving the block stops the background task.

        Returns:
            the context manager.
        """
        return _Autojump(self)

    async def run_autojump(self) -> None:
        """Keep time moving forever (the body of [`autojump`][kling_async.testing.clock.FakeClock.autojump]).

        Start it in your own task group and cancel the group when done, if the context manager
        does not fit.
        """
        while True:
            await self.wait_idle()
            due = self._next_wake_at()
            if due is None:
                self._new_sleeper = anyio.Event()
                await self._new_sleeper.wait()
                self._new_sleeper = None
                continue
            self._now = max(self._now, due)
            self._wake_due()

    async def wait_idle(self) -> None:
        """Return once every other task is blocked (waiting on something) at the same moment.

        On asyncio this checks each task's pending future and yields with zero-length
        checkpoints in between. ``anyio.wait_all_tasks_blocked`` does the same but sleeps
        0.1 s of wall time whenever some task is still runnable, which would make long
        scenarios slow. On other backends it defers to ``anyio.wait_all_tasks_blocked``.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            await anyio.wait_all_tasks_blocked()
            return
        me = asyncio.current_task()
        quiet = 0
        # Two quiet rounds in a row: a callback queued with call_soon in one loop iteration
        # (a future being resolved) has certainly run by the next one.
        while quiet < 2:
            await anyio.lowlevel.checkpoint()
            if all(task is me or _is_blocked(task) for task in asyncio.all_tasks()):
                quiet += 1
            else:
                quiet = 0

    def _next_wake_at(self) -> float | None:
        while self._heap and self._heap[0][2].done:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def _wake_due(self) -> None:
        while self._heap and self._heap[0][0] <= self._now:
            _, _, sleeper = heapq.heappop(self._heap)
            if not sleeper.done:
                sleeper.done = True
                if sleeper.scope is not None:
                    sleeper.scope.cancel()
                else:
                    sleeper.event.set()


def _is_blocked(task: asyncio.Task[object]) -> bool:
    waiter: asyncio.Future[object] | None = getattr(task, "_fut_waiter", None)
    return waiter is not None and not waiter.done()


class _Autojump:
    """The context manager returned by [`FakeClock.autojump`][kling_async.testing.clock.FakeClock.autojump]. Strictly private."""

    __slots__ = ("_clock", "_group")

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> FakeClock:
        group = anyio.create_task_group()
        await group.__aenter__()
        group.start_soon(self._clock.run_autojump)
        self._group = group
        return self._clock

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group, self._group = self._group, None
        assert group is not None  # noqa: S101 - __aenter__ always ran first
        group.cancel_scope.cancel()
        if exc is not None and not isinstance(exc, anyio.get_cancelled_exc_class()):
            # Let the body's own error propagate as itself, not wrapped in an exception group.
            await group.__aexit__(None, None, None)
            return None
        return await group.__aexit__(exc_type, exc, tb)
