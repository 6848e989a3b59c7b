"""The poll scheduler's loop and its long-lived check workers.

The loop sleeps (on the injected clock) until the next check falls due, then hands due checks
to parked workers; a worker that finishes a check takes the next due one itself, so the loop
only runs when workers are idle. What a check *is* (one GET, a list request) and what its answer
does is the scheduler's business: the loop only moves jobs.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import anyio.lowlevel

from ._poll_entry import Entry
from .clock import Clock

__all__ = ["CheckLoop"]

_YIELD_EVERY = 64
"""Checks the workers may run, none starting while another runs, before they let the event
loop run others."""

Job = list[Entry]


class WorkerSlot:
    """A parked check worker: the loop hands it a job and sets its event. Strictly private."""

    __slots__ = ("job", "wakeup")

    def __init__(self) -> None:
        self.job: Job | None = None
        self.wakeup = anyio.Event()

    def take(self) -> Job | None:
        """Return the job handed over (if any) and forget it."""
        job, self.job = self.job, None
        return job


class CheckLoop:
    """Runs checks as they fall due, at most *workers* at once. Strictly private."""

    def __init__(
        self,
        *,
        clock: Clock,
        workers: int,
        take: Callable[[float], Job | None],
        next_due: Callable[[], float | None],
        check: Callable[[Job], Awaitable[None]],
        abandon: Callable[[Job], None],
        halted: Callable[[], bool],
        drained: Callable[[], bool],
    ) -> None:
        """Create a loop (it runs in ``run``).

        Args:
            clock: where the loop sleeps until the next check is due.
            workers: how many checks may run at once.
            take: pops the job due at the given time, if any.
            next_due: when the next job falls due (``None``: nothing is scheduled).
            check: runs one job.
            abandon: takes back a job that was handed over but never started (cancelled).
            halted: the loop must stop now (stopped, or a fatal error).
            drained: the loop may stop: nothing more can fall due.
        """
        self._clock = clock
        self._workers = workers
        self._take = take
        self._next_due = next_due
        self._check = check
        self._abandon = abandon
        self._halted = halted
        self._drained = drained
        self.running = False
        self._wake_pending = False
        self._sleep_scope: anyio.CancelScope | None = None
        # When the sleeping loop will wake by itself; -inf while it is not sleeping.
        self._sleep_until = -math.inf
        self._group: anyio.abc.TaskGroup | None = None
        self._idle: list[WorkerSlot] = []
        self._unyielded = 0
        self._started = 0  # checks started by every worker, to tell a lone one
        self._yielding = False

    async def run(self) -> None:
        """Run until halted or drained; cancelling it cancels every check in flight."""
        self.running = True
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                # Long-lived workers, not a task per check: spawning costs more than the
                # scheduling itself at thousands of checks a second.
                for _ in range(self._workers):
                    group.start_soon(self._worker)
                while not self._halted():
                    self._wake_pending = False
                    next_due = self._dispatch()
                    if self._drained():
                        break
                    if self._wake_pending:
                        continue
                    with anyio.CancelScope() as scope:
                        self._sleep_scope = scope
                        if next_due is None:
                            self._sleep_until = math.inf
                            await anyio.sleep_forever()
                        else:
                            self._sleep_until = next_due
                            await self._clock.sleep(next_due - self._clock.now())
                    self._sleep_scope = None
                    self._sleep_until = -math.inf
                group.cancel_scope.cancel()
        finally:
            self._sleep_scope = None
            self._sleep_until = -math.inf
            self._group = None
            self._idle.clear()
            self.running = False

    def cancel(self) -> None:
        """Cancel every check in flight and end ``run``."""
        if self._group is not None:
            self._group.cancel_scope.cancel()
        self.wake()

    def wake(self) -> None:
        """Make the loop look again now (something changed)."""
        self._wake_pending = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()

    def scheduled(self, when: float) -> None:
        """Note a check newly due at *when*: wake the loop if it would sleep past it."""
        # With every worker busy there is nothing to wake for: a worker takes it when free.
        if when < self._sleep_until and self._idle:
            self.wake()

    def _dispatch(self) -> float | None:
        """Hand due checks to idle workers; return when the loop should look again.

        ``None`` means "until woken": nothing is tracked, or every worker is busy (a busy worker
        takes the next due check itself when it finishes).
        """
        now = self._clock.now()
        while self._idle:
            job = self._take(now)
            if job is None:
                break
            worker = self._idle.pop()
            worker.job = job
            worker.wakeup.set()
        if not self._idle:
            return None
        # take() found nothing due, so the top of the heap is a real check (or none).
        return self._next_due()

    async def _worker(self) -> None:
        """Run checks one after another; park when nothing is due."""
        slot = WorkerSlot()
        while True:
            if self._unyielded >= _YIELD_EVERY or self._yielding:
                await self._let_others_run()
            job = self._take(self._clock.now())
            if job is None:
                slot.wakeup = anyio.Event()
                self._idle.append(slot)
                if self._sleep_until == math.inf:
                    # The loop may be waiting for a free worker, or for the last check to end.
                    self.wake()
                try:
                    await slot.wakeup.wait()
                except BaseException:
                    handed = slot.take()
                    if handed is not None:
                        self._abandon(handed)  # handed over but never started
                    raise
                job = slot.take()
                if job is None:
                    continue
            self._started += 1
            started = self._started
            await self._check(job)
            if self._started == started:
                # No other check started meanwhile: this one may never have let the loop run.
                # (With real HTTP, other workers' checks start while this one waits; counting
                # every check made the workers yield for nothing, a microsecond a check.)
                self._unyielded += 1

    async def _let_others_run(self) -> None:
        """Yield to the event loop, with every other worker that runs before it resumes.

        A fetch that never awaits (a stub, a cache) must not let the workers hold the event loop
        while checks keep falling due: after ``_YIELD_EVERY`` checks without a pause, the first
        worker to notice yields, and so does every worker that runs until it is back. Real HTTP
        suspends anyway, so this costs one checkpoint per ``_YIELD_EVERY`` checks.
        """
        leader = not self._yielding
        self._yielding = True
        self._unyielded = 0
        try:
            await anyio.lowlevel.checkpoint()
        finally:
            if leader:
                self._yielding = False
