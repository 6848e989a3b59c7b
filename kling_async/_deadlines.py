"""Whole-request time limits for many concurrent requests, kept by one event-loop timer.

aiohttp's own ``ClientTimeout(total=...)`` arms an event-loop timer for every request and
cancels it when the answer is in. At thousands of status checks a second that costs about a
tenth of the client's CPU: the loop keeps its timers in a heap whose handles compare in Python,
and a cancelled one stays there until the heap is rebuilt. Here a request only notes its
deadline; one timer, armed for the earliest deadline in flight, cancels the requests whose time
is up, and it fires about once per timeout period however many requests come and go.

The expiry works as aiohttp's does: the request's task is cancelled, and the request turns that
cancellation (and only that one) into a timeout. A cancellation from anywhere else, even one
that lands in the same instant, propagates unchanged.

Strictly private: [`AiohttpTransport`][kling_async.transport.AiohttpTransport] uses it.
"""

from __future__ import annotations

import asyncio
import math
import sys
from typing import Any

__all__ = ["Deadlines"]

_SLACK = 1e-3
"""Seconds by which a deadline counts as reached early: the event loop may run a timer up to its
clock's resolution early, and a request timing out a millisecond early harms nobody."""


def _pending(task: asyncio.Task[Any]) -> int:
    """The cancellations pending on *task* (Python 3.11 counts them; 3.10 does not).

    A cancellation turned into a timeout must be taken back with ``Task.uncancel`` (3.11), or
    ``asyncio.timeout`` and task groups misread the task afterwards.
    """
    if sys.version_info >= (3, 11):
        return task.cancelling()
    return 0  # pragma: no cover - Python 3.10


def _take_back(task: asyncio.Task[Any]) -> int:
    """Take back one cancellation of *task*; return how many are still pending."""
    if sys.version_info >= (3, 11):
        return task.uncancel()
    return 0  # pragma: no cover - Python 3.10


class Deadlines:
    """The deadlines of the requests in flight on one event loop (one transport's).

    Use ``start`` as a request begins, ``expired`` in its ``except asyncio.CancelledError``
    and ``end`` in its ``finally``; nothing else is needed.
    """

    __slots__ = ("_armed_at", "_expired", "_live", "_loop", "_timer")

    def __init__(self) -> None:
        # task -> (deadline, the task's pending cancellations when its request began)
        self._live: dict[asyncio.Task[Any], tuple[float, int]] = {}
        # task -> its pending cancellations before the timer cancelled it
        self._expired: dict[asyncio.Task[Any], int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, seconds: float) -> asyncio.Task[Any] | None:
        """Note that the current task's request must end within *seconds*; return the task.

        ``None`` when there is no current task to cancel (the caller must then use another
        time limit).
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            return None
        if loop is not self._loop:
            self._reset(loop)  # a transport is used on one loop; a new one starts afresh
        deadline = loop.time() + seconds
        self._live[task] = (deadline, _pending(task))
        if deadline < self._armed_at:
            self._arm(deadline)
        return task

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether the cancellation *task* is handling is this timer's alone (then a timeout).

        Call it where the request catches ``asyncio.CancelledError``: ``False`` means re-raise.
        """
        pending = self._expired.pop(task, None)
        if pending is None:
            return False
        # Someone else cancelled it too (a cancel scope, a shutdown): theirs must go on.
        return _take_back(task) <= pending

    def end(self, task: asyncio.Task[Any]) -> None:
        """Forget *task*'s deadline: its request is over, whichever way."""
        del self._live[task]
        if self._expired:
            pending = self._expired.pop(task, None)
            if pending is not None:
                # Cancelled, but the request ended without the cancellation reaching it.
                _take_back(task)

    def close(self) -> None:
        """Disarm the timer (the transport is closing)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._armed_at = math.inf

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        self.close()
        self._live.clear()
        self._expired.clear()
        self._loop = loop

    def _arm(self, when: float) -> None:
        assert self._loop is not None  # noqa: S101 - start() sets it first
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._fire)
        self._armed_at = when

    def _fire(self) -> None:
        """Cancel every request whose deadline is reached; re-arm for the next one."""
        self._timer = None
        self._armed_at = math.inf
        assert self._loop is not None  # noqa: S101 - armed only after start()
        now = self._loop.time() + _SLACK
        soonest = math.inf
        expired = self._expired
        for task, (deadline, pending) in self._live.items():
            if deadline <= now:
                if task not in expired:
                    expired[task] = pending
                    task.cancel()  # only schedules: the dict is not changed under the loop
            elif deadline < soonest:
                soonest = deadline
        if soonest < math.inf:
            self._arm(soonest)
