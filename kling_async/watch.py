"""The ``async with client.watch(...)`` object: a poll scheduler with its task group.

The task group lives inside ``async with`` (entered in ``_enter``, left in ``_exit``), never
inside an async generator, so leaving the block, breaking out of the loop or being cancelled always
stops every check in flight.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.abc

from . import _fields
from ._closing import AsyncScoped
from .clock import Clock
from .completion import CompletionModel
from .errors import ConfigurationError, WaitTimeoutError
from .events import Event, EventSink, TaskExpired
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

    def drop(self, sink: Watcher, task_id: str) -> None:
        """Send *task_id*'s callbacks no more to *sink* (it gave the task up)."""
        ...


class Watcher(AsyncScoped):
    """Finished tasks, in completion order, as an async iterator.

    Made by [`KlingClient.watch`][kling_async.client.KlingClient.watch]; use it as ``async with client.watch(...) as results``.
    Failed tasks are yielded too (``task.failed``); nothing is dropped silently. When a deadline
    passes, iteration first yields everything that did finish, then raises
    [`WaitTimeoutError`][kling_async.errors.WaitTimeoutError] whose ``pending`` lists the rest.
    """

    def __init__(
        self,
        *,
        fetch: Fetch,
        batch_fetch: BatchFetch | None,
        policy: PollPolicy,
        clock: Clock,
        events: EventSink | None,
        on_finished: Callable[[Task], Awaitable[None]] | None,
        timeout: float | None,
        task_timeout: float | None,
        batch_size: int = 100,
        batch_pages: bool = True,
        batch_lookahead: float = 0.0,
        callbacks: CallbackRoute | None = None,
        expects_callback: Callable[[Task], bool] | None = None,
        completions: CompletionModel | None = None,
        rate: float | None = None,
    ) -> None:
        self._clock = clock
        self._events = events
        self._scheduler = PollScheduler(
            fetch,
            policy=policy,
            clock=clock,
            batch_fetch=batch_fetch,
            batch_size=batch_size,
            batch_pages=batch_pages,
            batch_lookahead=batch_lookahead,
            events=self._event if callbacks is not None else events,
            completions=completions,
            rate=rate,
        )
        _fields.check_seconds("timeout", timeout, zero=True)
        _fields.check_seconds("task_timeout", task_timeout, zero=True)
        self._on_finished = on_finished
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

    def _event(self, event: Event) -> None:
        # A task given up at its deadline needs no callback route any more; the stream may
        # live on for hours, so the route must not wait for the watcher to close.
        if isinstance(event, TaskExpired) and self._callbacks is not None:
            self._callbacks.drop(self, event.task.id)
        if self._events is not None:
            self._events(event)

    async def _enter(self) -> None:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        group.start_soon(self._scheduler.run)
        if self._deadline is not None:
            group.start_soon(self._close_at_deadline, self._deadline)

    async def _exit(self) -> None:
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
            ConfigurationError: iterated outside ``async with`` (nothing would check the tasks,
                so the loop would wait forever).
        """
        if self._group is None:
            raise ConfigurationError(
                "a watcher checks its tasks only inside `async with`: write "
                "`async with client.watch(tasks) as results: async for task in results: ...`"
            )
        try:
            task = await self._scheduler.__anext__()
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
        if self._on_finished is not None:
            # Here rather than in the scheduler's synchronous callback: the report (a slot
            # release) may be a network call. Polled tasks were reported by the fetch already.
            await self._on_finished(task)
        return task
