"""The ``async with client.watch(...)`` object: a poll scheduler with its task group.

The task group lives inside ``async with`` (entered in ``__aenter__``, left in ``__aexit__``), never
inside an async generator, so leaving the block, breaking out of the loop or being cancelled always
stops every check in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol

import anyio
import anyio.abc

from .clock import Clock
from .errors import WaitTimeoutError
from .events import EventSink
from .models import Task
from .scheduler import BatchFetch, Fetch, PollPolicy, PollScheduler

__all__ = ["CallbackRoute", "Watcher"]


class CallbackRoute(Protocol):
    """Where a watcher registers tasks whose results will also come by webhook."""

    def expect(self, sink: Watcher, task: Task) -> None:
        """Send *task*'s callbacks to *sink*."""
        ...

    def forget_sink(self, sink: Watcher) -> None:
        """Send nothing more to *sink* (it closed)."""
        ...


class Watcher:
    """Finished tasks, in completion order, as an async iterator.

    Made by :meth:`KlingClient.watch`; use it as ``async with client.watch(...) as results``.
    Failed tasks are yielded too (``task.failed``); nothing is dropped silently. When a deadline
    passes, iteration first yields everything that did finish, then raises
    :class:`~kling_async.WaitTimeoutError` whose ``pending`` lists the rest.
    """

    def __init__(
        self,
        *,
        fetch: Fetch,
        batch_fetch: BatchFetch | None,
        policy: PollPolicy,
        clock: Clock,
        events: EventSink | None,
        on_finished: Callable[[Task], None] | None,
        timeout: float | None,
        task_timeout: float | None,
        batch_size: int = 100,
        callbacks: CallbackRoute | None = None,
        expects_callback: Callable[[Task], bool] | None = None,
    ) -> None:
        self._clock = clock
        self._scheduler = PollScheduler(
            fetch,
            policy=policy,
            clock=clock,
            batch_fetch=batch_fetch,
            batch_size=batch_size,
            events=events,
            on_finished=on_finished,
        )
        self._task_timeout = task_timeout
        self._callbacks = callbacks
        self._expects_callback = expects_callback
        # Counted from when watch() is called, so tasks given up front share the deadline.
        self._deadline = None if timeout is None else clock.now() + timeout
        self._group: anyio.abc.TaskGroup | None = None
        # The deadline closed a stream that was still open: its end is a timeout, not success.
        self._cut_off = False
        # Iteration already ended with an error: nothing more is reported.
        self._reported = False

    async def __aenter__(self) -> Watcher:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        group.start_soon(self._scheduler.run)
        if self._deadline is not None:
            group.start_soon(self._close_at_deadline, self._deadline)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        if self._callbacks is not None:
            self._callbacks.forget_sink(self)
        if group is None:
            return
        self._scheduler.stop()
        group.cancel_scope.cancel()
        # The body's own exception (if any) propagates unchanged: the group only ever sees its
        # children, which were just cancelled.
        await group.__aexit__(None, None, None)

    async def _close_at_deadline(self, deadline: float) -> None:
        await self._clock.sleep(deadline - self._clock.now())
        if not self._scheduler.closed:
            self._cut_off = True
        self._scheduler.close()

    def add(self, task: Task, *, has_callback: bool = False) -> None:
        """Track another task (streaming use). Adding the same task twice does nothing.

        Args:
            task: the task to track.
            has_callback: its result will also arrive by webhook, so poll it only as a safety net.
        """
        route = None
        if not has_callback and self._expects_callback is not None and self._expects_callback(task):
            has_callback = True
            if self._callbacks is not None and not self._scheduler.knows(task.id):
                route = self._callbacks
        deadline = self._deadline
        if self._task_timeout is not None:
            own = self._clock.now() + self._task_timeout
            deadline = own if deadline is None else min(deadline, own)
        self._scheduler.add(task, deadline=deadline, has_callback=has_callback)
        if route is not None:
            route.expect(self, task)  # after add(): a closed watcher raised before this

    @property
    def running(self) -> bool:
        """``True`` while the watcher checks its tasks (inside ``async with``, until it stops)."""
        return self._group is not None and self._scheduler.running

    def update(self, task: Task) -> None:
        """Feed in a confirmed state for a tracked task (a verified webhook)."""
        self._scheduler.update(task)

    def poll_soon(self, task_id: str) -> None:
        """Check a tracked task at the next opportunity (an unverified webhook hint)."""
        self._scheduler.poll_soon(task_id)

    def close(self) -> None:
        """No more tasks will be added: iteration ends when the tracked ones have finished."""
        self._scheduler.close()

    @property
    def pending(self) -> tuple[Task, ...]:
        """Tasks still being tracked, as last seen."""
        return self._scheduler.pending

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> Task:
        """Return the next finished task.

        Raises:
            WaitTimeoutError: the deadline passed; ``pending`` lists the tasks still tracked
                then, and is empty when the deadline cut off a stream with none tracked (more
                were still to be added).
        """
        try:
            return await self._scheduler.__anext__()
        except StopAsyncIteration:
            if self._cut_off and not self._reported:
                self._reported = True  # raised once; the next call stops iteration
                raise WaitTimeoutError(
                    "the watcher's deadline passed before it was closed", pending=()
                ) from None
            raise
        except Exception:
            # The scheduler ended iteration with its own error (its timeout, with the tasks, or
            # a fatal fetch error): that is the one error reported.
            self._reported = True
            raise
