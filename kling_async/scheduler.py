"""The poll scheduler: one loop that watches many tasks and hands them back as they finish.

(It is one module a little over 500 lines on purpose: one class whose parts, the loop, the
entries, the heap, the policy and the outcome, already live in ``_poll_*`` modules beside it;
a third of what is left is documentation, this page's included.)

[`PollScheduler`][kling_async.scheduler.PollScheduler] knows nothing of HTTP. It is given a [`Fetch`][kling_async.scheduler.Fetch] function (and
optionally a [`BatchFetch`][kling_async.scheduler.BatchFetch] one) and decides *when* to call it for each tracked task:

* All tracked tasks share one heap of next-check times and one loop ([`PollScheduler.run`][kling_async.scheduler.PollScheduler.run]).
  There is no coroutine per task; a tracked task costs a few hundred bytes.
* Each task's checks spread out as it ages ([`PollPolicy.interval`][kling_async.scheduler.PollPolicy.interval]): the first after
  ``first_delay``, then geometrically further apart up to ``max_interval``, with jitter so that a
  batch submitted together does not poll in lock-step.
* At most ``max_in_flight`` checks run at once. With a ``batch_fetch``, due tasks are checked up
  to ``batch_size`` at a time in one call (one in-flight check).

Running it::

    scheduler = PollScheduler(client.get_task)
    async with anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        for task in submitted:
            scheduler.add(task, deadline=clock.now() + 600)
        scheduler.close()
        async for task in scheduler:      # finished tasks, succeeded or failed
            ...

How iteration ends, in this order of precedence:

1. Every finished task is yielded first, in completion order, each exactly once.
2. A fatal fetch error ([`NotFoundError`][kling_async.errors.NotFoundError],
   [`AuthenticationError`][kling_async.errors.AuthenticationError], or any error that outlasted
   ``retry_budget``) stops the loop; once the finished tasks are drained, ``__anext__`` raises
   that error.
3. After [`PollScheduler.close`][kling_async.scheduler.PollScheduler.close], once nothing is tracked any more: if any task's deadline
   expired, ``__anext__`` raises [`WaitTimeoutError`][kling_async.errors.WaitTimeoutError] whose ``pending``
   lists those tasks as last seen; otherwise iteration stops.

Each of these errors is raised once; the next ``__anext__`` stops iteration. ``run`` itself
never raises them (it returns), so an error raised by ``async for`` inside the caller's task group
leaves that group as an exception group unless the caller catches it inside the group.

A failed check (the fetch raised) is rescheduled after ``min_interval``, doubling per consecutive
failure up to ``max_interval``, and reported as a [`Retrying`][kling_async.events.Retrying] event;
the fetch function is expected to do its own HTTP-level retries first. A per-task deadline bounds
this too: a task whose check fails at or after its deadline expires. The scheduler does not time
out a fetch call itself; the fetch function must have its own timeouts.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from ._poll_entry import Entry
from ._poll_fetch import FATAL_ERRORS as FATAL_ERRORS
from ._poll_fetch import BatchFetch, Fetch, PartialBatchError, read_batch
from ._poll_heap import DueHeap
from ._poll_loop import CheckLoop
from ._poll_outcome import Outcome
from ._poll_policy import DEFAULT_EXPECTED as DEFAULT_EXPECTED
from ._poll_policy import PollPolicy
from .clock import Clock, SystemClock
from .completion import CompletionModel
from .errors import ConfigurationError, ResponseParseError
from .events import EventSink, Retrying, TaskPolled, emit
from .logfields import task_fields
from .models import _FINISHED, Task

__all__ = ["BatchFetch", "Fetch", "PartialBatchError", "PollPolicy", "PollScheduler"]

_log = logging.getLogger("kling_async.scheduler")


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
        batch_pages: bool = True,
        batch_lookahead: float = 0.0,
        events: EventSink | None = None,
        on_finished: Callable[[Task], None] | None = None,
        retry_budget: int | None = 10,
        rng: random.Random | None = None,
        completions: CompletionModel | None = None,
        rate: float | None = None,
    ) -> None:
        """Create a scheduler.

        Args:
            fetch: returns one task's current state.
            policy: check timing and concurrency; ``PollPolicy()`` when omitted.
            clock: the time source; [`SystemClock`][kling_async.clock.SystemClock] when omitted.
            batch_fetch: returns many tasks' states in one call; used for batchable tasks
                while two or more tasks are tracked (even for one due task: its answer also
                covers the others).
            batch_size: the most tasks per *batch_fetch* call.
            batch_pages: *batch_fetch* reads list pages that cover every tracked task at once
                (Kling's list route), so tracked tasks share one list pace
                (``PollPolicy.list_interval``). ``False``: it reads only the tasks it is
                given (by id), so each task keeps its own schedule and only due checks are
                batched.
            batch_lookahead: seconds; a batch of due tasks is topped up with tasks due within
                this much more, up to *batch_size*: an early check costs nothing when the
                request is sent anyway (by-id reads; 0 for none).
            events: receives [`TaskPolled`][kling_async.events.TaskPolled],
                [`Retrying`][kling_async.events.Retrying], [`TaskFinished`][kling_async.events.TaskFinished]
                and [`TaskExpired`][kling_async.events.TaskExpired] events.
            on_finished: called exactly once per finished task, before it is yielded. It must
                not raise; errors are logged.
            retry_budget: consecutive failed checks allowed per task before the last error
                becomes fatal; ``None`` to keep retrying until the task's deadline.
            rng: the random source for jitter (seed it for reproducible tests).
            completions: completion times learnt so far, shared with the client so that what
                one scheduler learns serves the next; the scheduler records every success it
                sees into it. A private one when omitted.
            rate: the requests per second *fetch* may send (the client's rate limit), or
                ``None``. When one round of checks over every tracked task takes longer at
                this rate than a check gap, the first checks of tasks created together spread
                over that round instead of all falling due at once (see
                [`window_interval`][kling_async.scheduler.PollPolicy.window_interval]'s *lead*).

        Raises:
            ConfigurationError: *batch_size* or *retry_budget* is out of range.
        """
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size!r}")
        if batch_lookahead < 0:
            raise ConfigurationError(f"batch_lookahead must be >= 0, got {batch_lookahead!r}")
        if retry_budget is not None and retry_budget < 1:
            raise ConfigurationError(f"retry_budget must be >= 1 or None, got {retry_budget!r}")
        self._fetch = fetch
        self._batch_fetch = batch_fetch
        self._batch_pages = batch_pages
        self._policy = policy if policy is not None else PollPolicy()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._events = events
        self._retry_budget = retry_budget
        self._rng = rng
        self._completions = completions if completions is not None else CompletionModel()
        self._rate = rate

        self._entries: dict[str, Entry] = {}
        # Ids no longer tracked (delivered, expired, given up): adding one again does nothing.
        # Tracked ids are the keys of _entries; one set of every id would cost 100k entries.
        self._gone: set[str] = set()
        self._due = DueHeap(
            batching=batch_fetch is not None, batch_size=batch_size, lookahead=batch_lookahead
        )

        self._closed = False
        self._stopped = False
        self._outcome = Outcome(
            stopped=lambda: self._stopped,
            drained=self._drained,
            on_finished=on_finished,
            events=events,
        )

        self._loop = CheckLoop(
            clock=self._clock,
            workers=self._policy.max_in_flight,
            take=self._due.take,
            next_due=self._due.next_due,
            check=self._check,
            abandon=self._check_done,
            halted=lambda: self._stopped or self._outcome.fatal is not None,
            drained=self._drained,
        )

    def __repr__(self) -> str:
        # O(tracked), fine for a repr that is read by a person.
        in_flight = sum(1 for entry in self._entries.values() if entry.in_flight)
        return (
            f"PollScheduler(tracked={len(self._entries)}, "
            f"due={self._due.due_count(self._clock.now())}, in_flight={in_flight}, "
            f"unread={len(self._outcome.finished)}, expired={len(self._outcome.expired)}, "
            f"running={self._loop.running}, closed={self._closed})"
        )

    def _drained(self) -> bool:
        """Closed, and nothing tracked any more: the loop and the iteration may end."""
        return self._closed and not self._entries

    # -- what callers feed in ------------------------------------------------------------------

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
        return tuple(self._outcome.expired)

    @property
    def running(self) -> bool:
        """``True`` while [`run`][kling_async.scheduler.PollScheduler.run] is running (it stops on close, stop or a fatal error)."""
        return self._loop.running

    def knows(self, task_id: str) -> bool:
        """Whether *task_id* was ever added (it may have finished since).

        Args:
            task_id: the task's id.
        """
        return task_id in self._entries or task_id in self._gone

    @property
    def closed(self) -> bool:
        """``True`` once [`close`][kling_async.scheduler.PollScheduler.close] was called."""
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
        if self.knows(task.id):
            return
        now = self._clock.now()
        entry = Entry.start(
            task,
            now,
            deadline=deadline,
            has_callback=has_callback,
            policy=self._policy,
            completions=self._completions,
        )
        self._entries[task.id] = entry
        if task.is_finished:
            self._deliver(entry, task)
            return
        entry.first_due = self._schedule(entry, now + self._next_gap(entry, now))

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
            entry.learn(self._policy, task, self._clock.now())
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
        self._loop.wake()
        self._outcome.signal()

    def stop(self) -> None:
        """Stop at once: [`run`][kling_async.scheduler.PollScheduler.run] cancels its checks and returns, iteration ends.

        Tasks still tracked stay in [`pending`][kling_async.scheduler.PollScheduler.pending]. Finished tasks already delivered are still
        yielded before iteration ends.
        """
        self._stopped = True
        self._closed = True
        self._loop.cancel()
        self._outcome.signal()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the polling loop until it is closed and empty, stopped, or hits a fatal error.

        Run it in a task group you own; cancelling that group cancels every check in flight and
        leaves nothing running. A check interrupted that way is rescheduled, so [`run`][kling_async.scheduler.PollScheduler.run] may
        be started again later.

        Raises:
            RuntimeError: the loop is already running.
        """
        if self._loop.running:
            raise RuntimeError("PollScheduler.run() is already running")
        try:
            await self._loop.run()
        finally:
            self._outcome.signal()

    async def _check(self, job: list[Entry]) -> None:
        """Run one job: a task's own fetch, or a batch fetch (for one due task too, while the
        list endpoint is in use: its answer also covers the others)."""
        entry = job[0]
        if len(job) > 1 or (
            self._batch_fetch is not None and entry.batchable and len(self._entries) > 1
        ):
            await self._check_batch(job)
            return
        try:
            try:
                task = await self._fetch(entry.task)
            except Exception as error:  # noqa: BLE001 - every failure is reported or re-raised
                self._failed(entry, error, f"poll {entry.task.id}")
            else:
                self._checked(entry, task)
        finally:
            if entry.in_flight:
                self._check_done(job)

    async def _check_batch(self, entries: list[Entry]) -> None:
        assert self._batch_fetch is not None  # noqa: S101 - only started with a batch_fetch
        # Entries scheduled after this point (a hint, a webhook update) know something newer
        # than this answer can; it must not overrule them.
        sent_at = self._due.stamp()
        operation = f"batch poll of {len(entries)} tasks"
        try:
            try:
                by_id, failure = await read_batch(self._batch_fetch, entries)
            except Exception as error:  # noqa: BLE001 - every failure is reported or re-raised
                for entry in entries:
                    self._failed(entry, error, operation)
                return
            now = self._clock.now()
            for entry in entries:
                task = by_id.pop(entry.task.id, None)
                if task is not None:
                    entry.listed = self._batch_pages
                    self._checked(entry, task)
                elif failure is not None:
                    # Not reached before the failure: a failed check, not an unlisted task.
                    self._failed(entry, failure, operation)
                elif self._entries.get(entry.task.id) is not entry:
                    pass  # delivered or dropped meanwhile
                elif self._batch_pages:
                    # The list endpoint does not know it (too old, another page): poll it on
                    # its own from now on, starting right away.
                    entry.unlist()
                    self._schedule(entry, now)
                else:
                    # Asked for by id and left out (a lagging index, say): a failed check,
                    # retried in later batches within the retry budget.
                    missing = ResponseParseError(
                        f"the answer left out task {entry.task.id}", where=operation
                    )
                    self._failed(entry, missing, operation)
            # A list answer also describes tracked tasks that were not due yet: that news
            # is free, and each one it covers need not be checked again for a while.
            for task in by_id.values():
                other = self._entries.get(task.id)
                if other is not None and other.takes_list_news(sent_at):
                    other.listed = True
                    self._checked(other, task)
        finally:
            self._check_done(entries)

    def _check_done(self, entries: list[Entry]) -> None:
        for entry in entries:
            if entry.in_flight:
                # Interrupted (cancelled) before an answer: check again as soon as possible.
                entry.in_flight = False
                if self._entries.get(entry.task.id) is entry:
                    self._schedule(entry, self._clock.now())

    # -- what an answer does to a task ---------------------------------------------------------

    def _checked(self, entry: Entry, task: Task) -> None:
        entry.in_flight = False
        if self._entries.get(entry.task.id) is not entry:
            return  # delivered meanwhile by update()
        if self._events:  # an EventHub with no sinks is falsy: build no event for nobody
            emit(self._events, TaskPolled(task))
        entry.checks += 1
        entry.failures = 0
        now = self._clock.now()
        if task.status in _FINISHED:  # task.is_finished, without a property call per check
            entry.learn(self._policy, task, now)
            self._deliver(entry, task)
            return
        entry.task = task
        entry.open_age = now - entry.added_at
        if entry.times is not None:
            entry.read_progress(self._policy, task, entry.open_age)
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
        if now < entry.first_due < now + gap:
            # Checked early (by a list read that other tasks were due for): the list's pace
            # must not move this task's first check later than the policy put it, where the
            # task may have finished; that it ran until now says nothing about that.
            gap = max(entry.first_due - now, self._policy.for_kind(entry.task.kind).min_interval)
        self._schedule(entry, now + gap)

    def _failed(self, entry: Entry, error: Exception, operation: str) -> None:
        entry.in_flight = False
        entry.recheck = False  # the retry below is the recheck
        if self._entries.get(entry.task.id) is not entry:
            return
        entry.failures += 1
        budget = self._retry_budget
        if isinstance(error, FATAL_ERRORS) or (budget is not None and entry.failures > budget):
            _log.error(
                "giving up polling task %s: %s", entry.task.id, error, extra=task_fields(entry.task)
            )
            if self._outcome.fatal is None:
                self._outcome.fatal = error
            self._loop.wake()
            self._outcome.signal()
            return
        now = self._clock.now()
        if entry.deadline is not None and now >= entry.deadline:
            self._expire(entry)
            return
        delay = self._schedule(entry, now + entry.failure_gap(self._policy)) - now
        _log.warning(
            "checking task %s failed (attempt %d), again in %.3g s: %s",
            entry.task.id,
            entry.failures,
            delay,
            error,
            extra=task_fields(entry.task),
        )
        emit(self._events, Retrying(operation, entry.failures, delay, error))

    def _next_gap(self, entry: Entry, now: float) -> float:
        # A lone tracked task is not checked by list: its own GET is lighter and buys the same.
        listing = self._batch_fetch is not None and self._batch_pages and len(self._entries) > 1
        # One GET per check: a round of checks over every tracked task takes this long.
        lead = (
            len(self._entries) / self._rate
            if self._rate is not None and self._batch_fetch is None
            else 0.0
        )
        return entry.next_gap(self._policy, now, listing, self._rng, lead)

    def _schedule(self, entry: Entry, when: float) -> float:
        """Put *entry* on the heap at *when*, or at its deadline if that is sooner."""
        if entry.deadline is not None:
            # One last check at the deadline itself, so a task finishing just in time counts.
            when = min(when, entry.deadline)
        self._due.push(entry, when)
        self._loop.scheduled(when)
        return when

    def _deliver(self, entry: Entry, task: Task) -> None:
        self._untrack(entry)
        entry.task = task
        self._outcome.deliver(task)

    def _expire(self, entry: Entry) -> None:
        self._untrack(entry)
        self._outcome.expire(entry.task)

    def _untrack(self, entry: Entry) -> None:
        task_id = entry.task.id
        del self._entries[task_id]
        self._gone.add(task_id)
        self._completions.forget(task_id)
        self._wake_if_done()
        entry.heap_seq = -1

    def _wake_if_done(self) -> None:
        if self._drained():
            self._loop.wake()  # the loop can end now, even if its next wake-up is far away

    # -- what callers get out ------------------------------------------------------------------

    def __aiter__(self) -> PollScheduler:
        """Return the scheduler itself: it is its own async iterator."""
        return self

    async def __anext__(self) -> Task:
        """Return the next finished task, waiting for one if needed.

        Returns:
            a task that succeeded or failed.

        Raises:
            StopAsyncIteration: everything was resolved (or [`stop`][kling_async.scheduler.PollScheduler.stop] was called).
            WaitTimeoutError: the scheduler is closed, all other tasks were yielded, and some
                tasks' deadlines expired (listed in ``pending``).
            Exception: the fatal fetch error that stopped the loop, after the finished tasks.
        """
        return await self._outcome.next()
