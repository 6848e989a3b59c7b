"""What the poll scheduler hands back: finished tasks in order, then how iteration ends.

The order of precedence is documented in [`kling_async.scheduler`][kling_async.scheduler]:
every finished task first, then a fatal fetch error, then (once closed and empty) a
[`WaitTimeoutError`][kling_async.errors.WaitTimeoutError] for the expired tasks. Each error is
raised once; the next call stops iteration.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import anyio

from .errors import WaitTimeoutError
from .events import EventSink, TaskExpired, TaskFinished, emit
from .logfields import task_fields
from .models import Task

__all__ = ["Outcome"]

# The scheduler's logger: these records are the scheduler's, wherever the code lives.
_log = logging.getLogger("kling_async.scheduler")


class Outcome:
    """The results of one scheduler, and the iteration over them. Strictly private."""

    __slots__ = (
        "_changed",
        "_drained",
        "_events",
        "_iterated",
        "_on_finished",
        "_stopped",
        "expired",
        "fatal",
        "finished",
    )

    def __init__(
        self,
        *,
        stopped: Callable[[], bool],
        drained: Callable[[], bool],
        on_finished: Callable[[Task], None] | None,
        events: EventSink | None,
    ) -> None:
        """Create an empty outcome.

        Args:
            stopped: whether the scheduler was stopped (iteration ends without a timeout error).
            drained: whether the scheduler is closed and tracks nothing any more.
            on_finished: the scheduler's callback for each finished task.
            events: receives [`TaskFinished`][kling_async.events.TaskFinished] and
                [`TaskExpired`][kling_async.events.TaskExpired] events.
        """
        self.finished: deque[Task] = deque()
        self.expired: list[Task] = []
        self.fatal: BaseException | None = None
        self._stopped = stopped
        self._drained = drained
        self._on_finished = on_finished
        self._events = events
        self._iterated = False
        self._changed = anyio.Event()

    def deliver(self, task: Task) -> None:
        """Hand out *task*, which finished: call back, report it, queue it for iteration."""
        self.finished.append(task)
        if self._on_finished is not None:
            try:
                self._on_finished(task)
            except Exception:  # noqa: BLE001 - a caller's bug must not stop the polling loop
                _log.exception(
                    "on_finished callback failed for task %s", task.id, extra=task_fields(task)
                )
        emit(self._events, TaskFinished(task))
        self.signal()

    def expire(self, task: Task) -> None:
        """Note that *task* passed its deadline unfinished (as last seen)."""
        self.expired.append(task)
        _log.warning("task %s passed its deadline unfinished", task.id, extra=task_fields(task))
        emit(self._events, TaskExpired(task))
        self.signal()

    def signal(self) -> None:
        """Wake the caller waiting in ``next``: something changed."""
        self._changed.set()

    async def next(self) -> Task:
        """Return the next finished task, waiting for one if needed (see the module docs)."""
        while True:
            if self.finished:
                return self.finished.popleft()
            if self._iterated:
                raise StopAsyncIteration
            if self.fatal is not None:
                self._iterated = True
                raise self.fatal
            stopped = self._stopped()
            if stopped or self._drained():
                self._iterated = True
                if self.expired and not stopped:
                    raise self._timeout_error()
                raise StopAsyncIteration
            self._changed = anyio.Event()
            await self._changed.wait()

    def _timeout_error(self) -> WaitTimeoutError:
        count = len(self.expired)
        ids = ", ".join(task.id for task in self.expired[:5])
        more = f" and {count - 5} more" if count > 5 else ""
        noun = "task" if count == 1 else "tasks"
        return WaitTimeoutError(
            f"{count} {noun} did not finish before the deadline: {ids}{more}",
            pending=self.expired,
        )
