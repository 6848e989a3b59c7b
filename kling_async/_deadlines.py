"""Whole-request time limits for many concurrent requests, kept by one event-loop timer.

aiohttp's own ``ClientTimeout(total=...)`` arms an event-loop timer for every request and
cancels it when the answer is in. At thousands of status checks a second that is measurable
(a raw aiohttp loop checks 6-9 % faster without it): the loop keeps its timers in a heap whose
handles compare in Python, and a cancelled one stays there until the heap is rebuilt. Here a request only notes its
deadline (a [`Ticket`][kling_async._deadlines.Ticket]); one timer per event loop, armed for the
earliest deadline in flight, cancels the requests whose time is up, and it fires about once per
timeout period however many requests come and go.

The expiry works as aiohttp's does: the request's task is cancelled, and the request turns that
cancellation (and only that one) into a timeout. A cancellation from anywhere else, even one
that lands in the same instant, propagates unchanged. The cancelling happens one loop iteration
after the deadline is found passed: a task whose answer came in that very iteration (it is
already due to resume) ends its request first and is not cancelled, as aiohttp, which cancels
its timer the moment the answer is complete, would not cancel it either.

Strictly private: [`AiohttpTransport`][kling_async.transport.AiohttpTransport] uses it.
"""

from __future__ import annotations

import asyncio
import math
import sys
import weakref
from typing import Any

__all__ = ["Deadlines", "Ticket"]

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


class Ticket:
    """One request's deadline: what [`Deadlines.start`][kling_async._deadlines.Deadlines.start]
    hands back, to pass to ``expired`` and ``end``. Compared by identity: two requests of one
    task (a request made from inside another's hooks) each have their own.

    It holds its task weakly, and the per-loop state its loop weakly: a ticket left behind (its
    loop closed under a request still running) keeps neither alive.
    """

    __slots__ = ("_task", "deadline", "expired", "owner", "pending")

    def __init__(
        self, owner: _LoopDeadlines, task: asyncio.Task[Any], deadline: float, pending: int
    ) -> None:
        self.owner = owner
        self._task = weakref.ref(task)
        self.deadline = deadline
        self.pending = pending
        """The task's pending cancellations when the request began."""
        self.expired = False
        """Cancelled by the timer, and that cancellation not yet accounted for."""

    @property
    def task(self) -> asyncio.Task[Any] | None:
        """The request's task, while it exists."""
        return self._task()


class Deadlines:
    """The deadlines of one transport's requests in flight, per event loop.

    Use ``start`` as a request begins, ``expired`` in its ``except asyncio.CancelledError``
    and ``end`` in its ``finally``; nothing else is needed. Nothing here keeps an event loop
    alive: the per-loop state is keyed weakly and refers to its loop weakly, and no timer
    handle is kept (a timer superseded by an earlier one finds out when it fires).
    """

    __slots__ = ("_last", "_loops")

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopDeadlines] = (
            weakref.WeakKeyDictionary()
        )
        # The state of the loop asked for last: a transport is used on one loop, almost always,
        # and this spares a weak-dictionary look-up per request.
        self._last: _LoopDeadlines | None = None

    def start(self, seconds: float) -> Ticket | None:
        """Note that the current task's request must end within *seconds*.

        Returns:
            the request's ticket; ``None`` when there is no current task to cancel (the caller
            must then keep the time limit another way).
        """
        task = asyncio.current_task()  # raises, as get_running_loop does, outside a loop
        if task is None:
            return None
        loop = task.get_loop()
        deadlines = self._last
        if deadlines is None or deadlines.loop() is not loop:
            deadlines = self._loops.get(loop)
            if deadlines is None:
                deadlines = self._loops[loop] = _LoopDeadlines(loop)
            self._last = deadlines
        return deadlines.start(loop, task, loop.time() + seconds)

    @staticmethod
    def expired(ticket: Ticket) -> bool:
        """Whether the cancellation the request is handling is its timer's alone (a timeout).

        Call it where the request catches ``asyncio.CancelledError``: ``False`` means re-raise.
        """
        task = ticket.task
        if not ticket.expired or task is None:
            return False
        ticket.expired = False
        # Someone else cancelled it too (a cancel scope, a shutdown): theirs must go on.
        return _take_back(task) <= ticket.pending

    @staticmethod
    def end(ticket: Ticket) -> None:
        """Forget *ticket*'s deadline: its request is over, whichever way."""
        ticket.owner.live.discard(ticket)
        if ticket.expired:
            # Cancelled, but the request ended without the cancellation reaching it.
            ticket.expired = False
            task = ticket.task
            if task is not None:
                _take_back(task)


class _LoopDeadlines:
    """The tickets in flight on one event loop, and the timer that expires them."""

    __slots__ = ("__weakref__", "_armed_at", "live", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)
        self.live: set[Ticket] = set()
        self._armed_at = math.inf

    def start(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any], deadline: float
    ) -> Ticket:
        ticket = Ticket(self, task, deadline, _pending(task))
        self.live.add(ticket)
        if deadline < self._armed_at:
            self._arm(loop, deadline)
        return ticket

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        # The handle is not kept (it refers to the loop); a timer armed for later that this
        # one supersedes sees, when it fires, that it is no longer the armed one.
        self._armed_at = when
        loop.call_at(when, self._fire, when)

    def _fire(self, armed_at: float) -> None:
        """Find the requests whose deadline is reached; re-arm for the next one."""
        if armed_at != self._armed_at:
            return  # superseded by a timer armed for sooner, which has done this
        self._armed_at = math.inf
        loop = asyncio.get_running_loop()
        now = loop.time() + _SLACK
        soonest = math.inf
        due: list[Ticket] = []
        for ticket in self.live:
            if ticket.deadline <= now:
                if not ticket.expired:
                    due.append(ticket)
            elif ticket.deadline < soonest:
                soonest = ticket.deadline
        if due:
            # Next iteration: a task whose answer arrived in this one resumes before that, and
            # ends its request rather than losing a complete answer to a timeout.
            loop.call_soon(self._expire, due)
        if soonest < math.inf:
            self._arm(loop, soonest)

    def _expire(self, due: list[Ticket]) -> None:
        for ticket in due:
            task = ticket.task
            if ticket in self.live and not ticket.expired and task is not None:
                ticket.expired = True
                task.cancel()
