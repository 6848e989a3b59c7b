"""The poll scheduler: one loop that watches many tasks and hands them back as they finish.

:class:`PollScheduler` knows nothing of HTTP. It is given a :data:`Fetch` function (and
optionally a :data:`BatchFetch` one) and decides *when* to call it for each tracked task:

* All tracked tasks share one heap of next-check times and one loop (:meth:`PollScheduler.run`).
  There is no coroutine per task; a tracked task costs a few hundred bytes.
* Each task's checks spread out as it ages (:meth:`PollPolicy.interval`): the first after
  ``first_delay``, then geometrically further apart up to ``max_interval``, with jitter so that a
  batch submitted together does not poll in lock-step.
* At most ``max_in_flight`` checks run at once. With a ``batch_fetch``, due tasks are checked up
  to ``batch_size`` at a time in one call (one in-flight check).

Running it::

    scheduler = PollScheduler(fetch, on_finished=lambda task: slots.release())
    async with anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        for task in submitted:
            scheduler.add(task, deadline=clock.now() + 600)
        scheduler.close()
        async for task in scheduler:      # finished tasks, succeeded or failed
            ...

How iteration ends, in this order of precedence:

1. Every finished task is yielded first, in completion order, each exactly once.
2. A fatal fetch error (:class:`~kling_async.errors.NotFoundError`,
   :class:`~kling_async.errors.AuthenticationError`, or any error that outlasted
   ``retry_budget``) stops the loop; once the finished tasks are drained, ``__anext__`` raises
   that error.
3. After :meth:`PollScheduler.close`, once nothing is tracked any more: if any task's deadline
   expired, ``__anext__`` raises :class:`~kling_async.errors.WaitTimeoutError` whose ``pending``
   lists those tasks as last seen; otherwise iteration stops.

Each of these errors is raised once; the next ``__anext__`` stops iteration. :meth:`run` itself
never raises them (it returns), so an error raised by ``async for`` inside the caller's task group
leaves that group as an exception group unless the caller catches it inside the group.

A failed check (the fetch raised) is rescheduled after ``min_interval``, doubling per consecutive
failure up to ``max_interval``, and reported as a :class:`~kling_async.events.Retrying` event;
the fetch function is expected to do its own HTTP-level retries first. A per-task deadline bounds
this too: a task whose check fails at or after its deadline expires. The scheduler does not time
out a fetch call itself; the fetch function must have its own timeouts.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import attrs

from .clock import Clock, SystemClock
from .errors import AuthenticationError, ConfigurationError, NotFoundError, WaitTimeoutError
from .events import EventSink, Retrying, TaskExpired, TaskFinished, TaskPolled, emit
from .models import Task, TaskKind

__all__ = ["BatchFetch", "Fetch", "PollPolicy", "PollScheduler"]

_log = logging.getLogger("kling_async.scheduler")

Fetch = Callable[[Task], Awaitable[Task]]
"""Fetch one task's current state. May raise; the scheduler retries it later."""

BatchFetch = Callable[[Sequence[Task]], Awaitable[Sequence[Task]]]
"""Fetch the current state of many tasks in one call (a list endpoint).

It may return fewer tasks than asked for (matched by id); a missing task falls back to
:data:`Fetch` for the rest of its life. It may also return other tasks (a list page holds what
it holds): those that are tracked count as checked, so their next checks move later.
"""

_YIELD_EVERY = 64
"""Checks the workers may run without a pause before they let the event loop run others."""

FATAL_ERRORS: tuple[type[BaseException], ...] = (NotFoundError, AuthenticationError)
"""Fetch errors that are never retried: waiting longer cannot make them go away."""


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ConfigurationError(f"PollPolicy.{attribute.name} must be > 0, got {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 1:
        raise ConfigurationError(f"PollPolicy.{attribute.name} must be >= 1, got {value!r}")


def _fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value < 1:
        raise ConfigurationError(f"PollPolicy.{attribute.name} must be in [0, 1), got {value!r}")


@attrs.frozen
class PollPolicy:
    """When to check a task again.

    Attributes:
        first_delay: seconds from tracking a task to its first check.
        min_interval: the gap after the first check.
        max_interval: the largest gap between checks.
        backoff: each gap is this many times the previous one (>= 1), up to *max_interval*.
        jitter: each gap is randomly stretched or shrunk by up to this fraction.
        max_in_flight: the most checks (fetch calls) running at once.
        per_kind: policies for particular task kinds, by :attr:`TaskKind.name`; the timing
            fields of the matching policy replace these (*max_in_flight* stays global).
        callback_interval: the gap for tasks whose result also arrives by webhook; polling is
            then only a safety net.
        list_interval: the gap after the first check for tasks checked through a list endpoint
            (a ``batch_fetch``), capped at *max_interval*, while two or more tasks are tracked.
            One list request covers every such task, so these do not back off: the cost is one
            request per gap, however many tasks are tracked.

    Raises:
        ConfigurationError: a value is out of range.
    """

    first_delay: float = attrs.field(default=5.0, validator=_positive)
    min_interval: float = attrs.field(default=5.0, validator=_positive)
    max_interval: float = attrs.field(default=30.0, validator=_positive)
    backoff: float = attrs.field(default=1.5, validator=_at_least_one)
    jitter: float = attrs.field(default=0.1, validator=_fraction)
    max_in_flight: int = attrs.field(default=16, validator=_at_least_one)
    per_kind: Mapping[str, PollPolicy] = attrs.field(factory=dict, hash=False)
    callback_interval: float = attrs.field(default=120.0, validator=_positive)
    list_interval: float = attrs.field(default=5.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.min_interval > self.max_interval:
            raise ConfigurationError(
                f"PollPolicy.min_interval ({self.min_interval}) must not exceed "
                f"max_interval ({self.max_interval})"
            )

    def for_kind(self, kind: TaskKind | None) -> PollPolicy:
        """Return the policy that applies to *kind* (this one unless overridden).

        Args:
            kind: the task's kind, or ``None``.

        Returns:
            the matching entry of *per_kind*, else ``self``.
        """
        if kind is None:
            return self
        return self.per_kind.get(kind.name, self)

    def interval(
        self,
        age: float,
        checks: int,
        kind: TaskKind | None = None,
        *,
        rng: random.Random | None = None,
    ) -> float:
        """Return the seconds to wait before the next check.

        The gap grows with the number of checks already made: ``first_delay`` before the first,
        ``min_interval`` after it, then times *backoff* per check up to *max_interval*. After the
        first check the gap is also at least a tenth of *age* (capped at *max_interval*), so a
        task that has been tracked for long is checked at a relaxed pace. Jitter is applied last.

        Args:
            age: seconds since the task was first tracked.
            checks: how many checks have completed so far.
            kind: the task's kind, for *per_kind* overrides.
            rng: the random source for jitter; the :mod:`random` module when omitted.

        Returns:
            the delay in seconds (> 0).

        Examples:
            >>> policy = PollPolicy(jitter=0)
            >>> [round(policy.interval(0, n), 2) for n in range(6)]
            [5.0, 5.0, 7.5, 11.25, 16.88, 25.31]
        """
        policy = self.for_kind(kind)
        if checks <= 0:
            base = policy.first_delay
        else:
            # Cap the exponent: a task checked thousands of times must not overflow the float.
            steps = min(checks - 1, 200)
            base = min(policy.max_interval, policy.min_interval * policy.backoff**steps)
            base = min(policy.max_interval, max(base, age / 10))
        if policy.jitter:
            source = rng if rng is not None else random
            base *= 1 + source.uniform(-policy.jitter, policy.jitter)
        return base


class _Entry:
    """One tracked task. Strictly private; kept small for batches of 100k tasks."""

    __slots__ = (
        "added_at",
        "batchable",
        "checks",
        "deadline",
        "failures",
        "has_callback",
        "heap_seq",
        "hinted",
        "in_flight",
        "recheck",
        "task",
    )

    def __init__(self, task: Task, added_at: float, deadline: float | None, callback: bool) -> None:
        self.task = task
        self.added_at = added_at
        self.deadline = deadline
        self.has_callback = callback
        self.checks = 0
        self.failures = 0
        # The sequence number of this entry's one live heap item; older items are stale.
        self.heap_seq = -1
        self.in_flight = False
        # poll_soon() arrived while a check was in flight: its answer may predate the news.
        self.recheck = False
        # poll_soon() was asked: news (a callback) says the task changed; if the API does not
        # show it yet, look again soon rather than after the safety-net interval.
        self.hinted = False
        self.batchable = True


class _Worker:
    """A parked check worker: the loop hands it a job and sets its event."""

    __slots__ = ("job", "wakeup")

    def __init__(self) -> None:
        self.job: list[_Entry] | None = None
        self.wakeup = anyio.Event()

    def take(self) -> list[_Entry] | None:
        """Return the job handed over (if any) and forget it."""
        job, self.job = self.job, None
        return job


class PollScheduler:
    """Watches many tasks with one loop and yields each once it has finished.

    See the module documentation for how to run it and how iteration ends.
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        policy: PollPolicy | None = None,
        clock: Clock | None = None,
        batch_fetch: BatchFetch | None = None,
        batch_size: int = 100,
        events: EventSink | None = None,
        on_finished: Callable[[Task], None] | None = None,
        retry_budget: int | None = 10,
        rng: random.Random | None = None,
    ) -> None:
        """Create a scheduler.

        Args:
            fetch: returns one task's current state.
            policy: check timing and concurrency; ``PollPolicy()`` when omitted.
            clock: the time source; :class:`~kling_async.clock.SystemClock` when omitted.
            batch_fetch: returns many tasks' states in one call; used for batchable tasks
                while two or more tasks are tracked (even for one due task: its answer also
                covers the others).
            batch_size: the most tasks per *batch_fetch* call.
            events: receives :class:`~kling_async.events.TaskPolled`,
                :class:`~kling_async.events.Retrying`, :class:`~kling_async.events.TaskFinished`
                and :class:`~kling_async.events.TaskExpired` events.
            on_finished: called exactly once per finished task, before it is yielded (the
                client releases the task's slot here). It must not raise; errors are logged.
            retry_budget: consecutive failed checks allowed per task before the last error
                becomes fatal; ``None`` to keep retrying until the task's deadline.
            rng: the random source for jitter (seed it for reproducible tests).

        Raises:
            ConfigurationError: *batch_size* or *retry_budget* is out of range.
        """
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size!r}")
        if retry_budget is not None and retry_budget < 1:
            raise ConfigurationError(f"retry_budget must be >= 1 or None, got {retry_budget!r}")
        self._fetch = fetch
        self._batch_fetch = batch_fetch
        self._batch_size = batch_size
        self._policy = policy if policy is not None else PollPolicy()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._events = events
        self._on_finished = on_finished
        self._retry_budget = retry_budget
        self._rng = rng

        self._entries: dict[str, _Entry] = {}
        self._seen: set[str] = set()
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = itertools.count()

        self._results: deque[Task] = deque()
        self._expired: list[Task] = []
        self._fatal: BaseException | None = None
        self._closed = False
        self._stopped = False
        self._finished_iterating = False
        self._results_changed = anyio.Event()

        self._running = False
        self._wake_pending = False
        self._sleep_scope: anyio.CancelScope | None = None
        # When the sleeping loop will wake by itself; -inf while it is not sleeping.
        self._sleep_until = -math.inf
        self._group: anyio.abc.TaskGroup | None = None
        self._idle: list[_Worker] = []
        self._unyielded = 0
        self._yielding = False

    # -- what callers feed in ------------------------------------------------------------------

    @property
    def policy(self) -> PollPolicy:
        """The policy in use."""
        return self._policy

    @property
    def tracked(self) -> int:
        """How many tasks are tracked (not yet finished, expired or abandoned)."""
        return len(self._entries)

    @property
    def pending(self) -> tuple[Task, ...]:
        """The tracked tasks, each as last seen."""
        return tuple(entry.task for entry in self._entries.values())

    @property
    def expired(self) -> tuple[Task, ...]:
        """Tasks whose deadline passed before they finished, as last seen."""
        return tuple(self._expired)

    @property
    def running(self) -> bool:
        """``True`` while :meth:`run` is running (it stops on close, stop or a fatal error)."""
        return self._running

    def knows(self, task_id: str) -> bool:
        """Whether *task_id* was ever added (it may have finished since).

        Args:
            task_id: the task's id.
        """
        return task_id in self._seen

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`close` was called."""
        return self._closed

    def add(self, task: Task, *, deadline: float | None = None, has_callback: bool = False) -> None:
        """Start tracking *task*.

        A task that is already finished is delivered at once. A task id that was added before
        (tracked or already delivered) is ignored.

        Args:
            task: the task, as last seen (e.g. the create answer).
            deadline: clock time after which the task is given up (see the module docs);
                ``None`` for none.
            has_callback: its result will also arrive by webhook, so it is polled only every
                ``callback_interval`` seconds as a safety net.

        Raises:
            RuntimeError: the scheduler was closed.
        """
        if self._closed:
            raise RuntimeError("cannot add tasks to a closed PollScheduler")
        if task.id in self._seen:
            return
        self._seen.add(task.id)
        now = self._clock.now()
        entry = _Entry(task, now, deadline, has_callback)
        self._entries[task.id] = entry
        if task.is_finished:
            self._deliver(entry, task)
            return
        self._schedule(entry, now + self._next_gap(entry, now))

    def update(self, task: Task) -> None:
        """Feed in news about a tracked task from elsewhere (a verified webhook, say).

        A finished task is delivered at once; an unfinished one has its next check
        rescheduled from now. Unknown task ids are ignored.

        Args:
            task: the task's new state.
        """
        entry = self._entries.get(task.id)
        if entry is None:
            return
        if task.is_finished:
            self._deliver(entry, task)
            return
        entry.task = task
        if not entry.in_flight:
            now = self._clock.now()
            self._schedule(entry, now + self._next_gap(entry, now))

    def poll_soon(self, task_id: str) -> None:
        """Check a tracked task at the next opportunity (an unverified webhook hint, say).

        If a check of it is already running, another follows as soon as that one answers: the
        running check may have been sent before the news it is meant to confirm. If the check
        does not show the task finished, it is checked once more after ``min_interval`` (the API
        may lag the news), then at its usual pace.

        Args:
            task_id: the task's id; unknown ids are ignored.
        """
        entry = self._entries.get(task_id)
        if entry is None:
            return
        entry.hinted = True
        if entry.in_flight:
            entry.recheck = True
            return
        self._schedule(entry, self._clock.now())

    def close(self) -> None:
        """Accept no more tasks; iteration ends once every tracked task is resolved."""
        self._closed = True
        self._wake()
        self._signal_results()

    def stop(self) -> None:
        """Stop at once: :meth:`run` cancels its checks and returns, iteration ends.

        Tasks still tracked stay in :attr:`pending`. Finished tasks already delivered are still
        yielded before iteration ends.
        """
        self._stopped = True
        self._closed = True
        if self._group is not None:
            self._group.cancel_scope.cancel()
        self._wake()
        self._signal_results()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the polling loop until it is closed and empty, stopped, or hits a fatal error.

        Run it in a task group you own; cancelling that group cancels every check in flight and
        leaves nothing running. A check interrupted that way is rescheduled, so :meth:`run` may
        be started again later.

        Raises:
            RuntimeError: the loop is already running.
        """
        if self._running:
            raise RuntimeError("PollScheduler.run() is already running")
        self._running = True
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                # Long-lived workers, not a task per check: spawning costs more than the
                # scheduling itself at thousands of checks a second.
                for _ in range(self._policy.max_in_flight):
                    group.start_soon(self._worker)
                while not self._stopped and self._fatal is None:
                    self._wake_pending = False
                    next_due = self._dispatch()
                    if self._closed and not self._entries:
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
            self._running = False
            self._signal_results()

    def _wake(self) -> None:
        self._wake_pending = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()

    def _dispatch(self) -> float | None:
        """Hand due checks to idle workers; return when the loop should look again.

        ``None`` means "until woken": nothing is tracked, or every worker is busy (a busy worker
        takes the next due check itself when it finishes).
        """
        now = self._clock.now()
        while self._idle:
            job = self._take_job(now)
            if job is None:
                break
            worker = self._idle.pop()
            worker.job = job
            worker.wakeup.set()
        if not self._idle:
            return None
        # _take_job() found nothing due, so the top of the heap is a real check (or none).
        return self._heap[0][0] if self._heap else None

    def _take_job(self, now: float) -> list[_Entry] | None:
        """Pop the next check that is due at *now*: one task, or a batch for ``batch_fetch``.

        Returns ``None`` when nothing is due (stale heap items on top are dropped on the way,
        so the top is then the next real check). At most ``max_in_flight`` checks run at once
        because that is how many workers take them.
        """
        batch: list[_Entry] = []
        while self._heap:
            due_at, seq, entry = self._heap[0]
            if seq != entry.heap_seq:
                heapq.heappop(self._heap)
                continue
            if due_at > now:
                break
            joins_batch = self._batch_fetch is not None and entry.batchable
            if batch and not joins_batch:
                break  # it starts its own check next time
            heapq.heappop(self._heap)
            entry.heap_seq = -1
            entry.in_flight = True
            batch.append(entry)
            if not joins_batch or len(batch) == self._batch_size:
                break
        return batch or None

    async def _worker(self) -> None:
        """Run checks one after another; park when nothing is due."""
        slot = _Worker()
        while True:
            self._unyielded += 1
            if self._unyielded >= _YIELD_EVERY or self._yielding:
                await self._let_others_run()
            job = self._take_job(self._clock.now())
            if job is None:
                slot.wakeup = anyio.Event()
                self._idle.append(slot)
                if self._sleep_until == math.inf:
                    # The loop may be waiting for a free worker, or for the last check to end.
                    self._wake()
                try:
                    await slot.wakeup.wait()
                except BaseException:
                    handed = slot.take()
                    if handed is not None:
                        self._check_done(handed)  # handed over but never started
                    raise
                job = slot.take()
                if job is None:
                    continue
            if len(job) == 1 and not self._list_checked(job[0]):
                await self._check_one(job[0])
            else:
                await self._check_batch(job)

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

    async def _check_one(self, entry: _Entry) -> None:
        try:
            try:
                task = await self._fetch(entry.task)
            except Exception as error:  # noqa: BLE001 - every failure is reported or re-raised
                self._failed(entry, error, f"poll {entry.task.id}")
            else:
                self._checked(entry, task)
        finally:
            self._check_done([entry])

    async def _check_batch(self, entries: list[_Entry]) -> None:
        assert self._batch_fetch is not None  # noqa: S101 - only started with a batch_fetch
        # Entries scheduled after this point (a hint, a webhook update) know something newer
        # than this answer can; it must not overrule them.
        sent_at = next(self._seq)
        try:
            try:
                answer = await self._batch_fetch([entry.task for entry in entries])
            except Exception as error:  # noqa: BLE001 - every failure is reported or re-raised
                for entry in entries:
                    self._failed(entry, error, f"batch poll of {len(entries)} tasks")
            else:
                by_id = {task.id: task for task in answer}
                now = self._clock.now()
                for entry in entries:
                    task = by_id.pop(entry.task.id, None)
                    if task is not None:
                        self._checked(entry, task)
                    elif self._entries.get(entry.task.id) is entry:
                        # The list endpoint does not know it (too old, another page): poll it on
                        # its own from now on, starting right away.
                        entry.batchable = False
                        entry.in_flight = False
                        entry.recheck = False  # checking it right away is the recheck
                        self._schedule(entry, now)
                # A list answer also describes tracked tasks that were not due yet: that news
                # is free, and each one it covers need not be checked again for a while.
                for task in by_id.values():
                    other = self._entries.get(task.id)
                    if (
                        other is not None
                        and other.batchable
                        and not other.in_flight
                        and not other.recheck
                        and 0 <= other.heap_seq < sent_at
                    ):
                        self._checked(other, task)
        finally:
            self._check_done(entries)

    def _check_done(self, entries: list[_Entry]) -> None:
        for entry in entries:
            if entry.in_flight:
                # Interrupted (cancelled) before an answer: check again as soon as possible.
                entry.in_flight = False
                if self._entries.get(entry.task.id) is entry:
                    self._schedule(entry, self._clock.now())

    def _checked(self, entry: _Entry, task: Task) -> None:
        entry.in_flight = False
        if self._entries.get(entry.task.id) is not entry:
            return  # delivered meanwhile by update()
        emit(self._events, TaskPolled(task))
        entry.checks += 1
        entry.failures = 0
        if task.is_finished:
            self._deliver(entry, task)
            return
        entry.task = task
        now = self._clock.now()
        if entry.deadline is not None and now >= entry.deadline:
            self._expire(entry)
            return
        if entry.recheck:
            entry.recheck = False
            self._schedule(entry, now)
            return
        gap = self._next_gap(entry, now)
        if entry.hinted:
            # The hint is ahead of the API (or false): one more look after min_interval.
            entry.hinted = False
            gap = min(gap, self._policy.for_kind(entry.task.kind).min_interval)
        self._schedule(entry, now + gap)

    def _failed(self, entry: _Entry, error: Exception, operation: str) -> None:
        entry.in_flight = False
        entry.recheck = False  # the retry below is the recheck
        if self._entries.get(entry.task.id) is not entry:
            return
        entry.failures += 1
        budget = self._retry_budget
        if isinstance(error, FATAL_ERRORS) or (budget is not None and entry.failures > budget):
            _log.error("giving up polling task %s: %s", entry.task.id, error)
            if self._fatal is None:
                self._fatal = error
            self._wake()
            self._signal_results()
            return
        now = self._clock.now()
        if entry.deadline is not None and now >= entry.deadline:
            self._expire(entry)
            return
        policy = self._policy.for_kind(entry.task.kind)
        delay = min(policy.max_interval, policy.min_interval * 2 ** min(entry.failures - 1, 30))
        delay = self._schedule(entry, now + delay) - now
        _log.warning(
            "checking task %s failed (attempt %d), again in %.3g s: %s",
            entry.task.id,
            entry.failures,
            delay,
            error,
        )
        emit(self._events, Retrying(operation, entry.failures, delay, error))

    def _list_checked(self, entry: _Entry) -> bool:
        """Whether *entry* is checked through the list endpoint (then without backing off).

        A lone tracked task is not: its own GET is lighter than a list page and buys the same.
        """
        return self._batch_fetch is not None and entry.batchable and len(self._entries) > 1

    def _next_gap(self, entry: _Entry, now: float) -> float:
        if entry.has_callback:
            return self._policy.for_kind(entry.task.kind).callback_interval
        if entry.checks and self._list_checked(entry):
            # No jitter: tasks that fall due together share one list request.
            policy = self._policy.for_kind(entry.task.kind)
            return min(policy.list_interval, policy.max_interval)
        age = now - entry.added_at
        return self._policy.interval(age, entry.checks, entry.task.kind, rng=self._rng)

    def _schedule(self, entry: _Entry, when: float) -> float:
        """Put *entry* on the heap at *when*, or at its deadline if that is sooner."""
        if entry.deadline is not None:
            # One last check at the deadline itself, so a task finishing just in time counts.
            when = min(when, entry.deadline)
        entry.heap_seq = next(self._seq)
        heapq.heappush(self._heap, (when, entry.heap_seq, entry))
        # With every worker busy there is nothing to wake for: a worker takes it when free.
        if when < self._sleep_until and self._idle:
            self._wake()
        return when

    def _deliver(self, entry: _Entry, task: Task) -> None:
        del self._entries[task.id]
        self._wake_if_done()
        entry.heap_seq = -1
        entry.task = task
        self._results.append(task)
        if self._on_finished is not None:
            try:
                self._on_finished(task)
            except Exception:  # noqa: BLE001 - a caller's bug must not stop the polling loop
                _log.exception("on_finished callback failed for task %s", task.id)
        emit(self._events, TaskFinished(task))
        self._signal_results()

    def _expire(self, entry: _Entry) -> None:
        del self._entries[entry.task.id]
        self._wake_if_done()
        entry.heap_seq = -1
        self._expired.append(entry.task)
        _log.warning("task %s passed its deadline unfinished", entry.task.id)
        emit(self._events, TaskExpired(entry.task))
        self._signal_results()

    def _wake_if_done(self) -> None:
        if self._closed and not self._entries:
            self._wake()  # the loop can end now, even if its next wake-up is far away

    def _signal_results(self) -> None:
        self._results_changed.set()

    # -- what callers get out ------------------------------------------------------------------

    def __aiter__(self) -> PollScheduler:
        """Return the scheduler itself: it is its own async iterator."""
        return self

    async def __anext__(self) -> Task:
        """Return the next finished task, waiting for one if needed.

        Returns:
            a task that succeeded or failed.

        Raises:
            StopAsyncIteration: everything was resolved (or :meth:`stop` was called).
            WaitTimeoutError: the scheduler is closed, all other tasks were yielded, and some
                tasks' deadlines expired (listed in ``pending``).
            Exception: the fatal fetch error that stopped the loop, after the finished tasks.
        """
        while True:
            if self._results:
                return self._results.popleft()
            if self._finished_iterating:
                raise StopAsyncIteration
            if self._fatal is not None:
                self._finished_iterating = True
                raise self._fatal
            if self._stopped or (self._closed and not self._entries):
                self._finished_iterating = True
                if self._expired and not self._stopped:
                    raise self._timeout_error()
                raise StopAsyncIteration
            self._results_changed = anyio.Event()
            await self._results_changed.wait()

    def _timeout_error(self) -> WaitTimeoutError:
        count = len(self._expired)
        ids = ", ".join(task.id for task in self._expired[:5])
        more = f" and {count - 5} more" if count > 5 else ""
        noun = "task" if count == 1 else "tasks"
        return WaitTimeoutError(
            f"{count} {noun} did not finish before the deadline: {ids}{more}",
            pending=self._expired,
        )
