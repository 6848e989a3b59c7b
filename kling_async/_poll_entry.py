"""One tracked task of the poll scheduler, and how long to wait before checking it again.

Everything here is about a single task: what the scheduler knows of it (checks made, failures in
a row, its progress readings) and the gap to its next check that follows from that and the
[`PollPolicy`][kling_async.scheduler.PollPolicy]. The scheduler decides what to do with the gap.
"""

from __future__ import annotations

import random

from ._poll_policy import PollPolicy
from .completion import CompletionModel, CompletionTimes, progress_of
from .models import Task

__all__ = ["Entry"]


class Entry:
    """One tracked task. Strictly private; kept small for batches of 100k tasks."""

    __slots__ = (
        "added_at",
        "batchable",
        "checks",
        "deadline",
        "eta",
        "failures",
        "first_due",
        "has_callback",
        "heap_seq",
        "hinted",
        "in_flight",
        "listed",
        "open_age",
        "progress",
        "recheck",
        "task",
        "times",
    )

    def __init__(self, task: Task, added_at: float, deadline: float | None, callback: bool) -> None:
        self.task = task
        # When the task was created (if known) or first tracked: ages count from here.
        self.added_at = added_at
        # Where tasks like this one finish; None when the policy does not use that.
        self.times: CompletionTimes | None = None
        # The age at the last check that found it unfinished: a finish lies after it.
        self.open_age = -1.0
        # The first (age, percent) progress reading while running, and the finish age it and
        # the latest reading point to (-1: none yet).
        self.progress: tuple[float, float] | None = None
        self.eta = -1.0
        self.deadline = deadline
        self.has_callback = callback
        self.checks = 0
        self.failures = 0
        # The sequence number of this entry's one live heap item; older items are stale.
        self.heap_seq = -1
        # When its first check was put: where the policy expects it may have finished.
        self.first_due = 0.0
        self.in_flight = False
        # poll_soon() arrived while a check was in flight: its answer may predate the news.
        self.recheck = False
        # poll_soon() was asked: news (a callback) says the task changed; if the API does not
        # show it yet, look again soon rather than after the safety-net interval.
        self.hinted = False
        self.batchable = True
        # Checked by a list request at least once: it keeps the list's pace when it is the
        # last task left, instead of starting per-task back-off from its many checks.
        self.listed = False

    def unlist(self) -> None:
        """The list endpoint does not know this task: check it with its own fetch from now on."""
        self.batchable = False
        self.in_flight = False
        self.recheck = False  # checking it right away is the recheck

    def takes_list_news(self, sent_at: int) -> bool:
        """Whether a list answer sent at *sent_at* (a heap stamp) may count as this task's check.

        Not when the task is checked otherwise already, or was rescheduled after the list
        request went out: what rescheduled it (a hint, a webhook) knows something newer.
        """
        return (
            self.batchable
            and not self.in_flight
            and not self.recheck
            and 0 <= self.heap_seq < sent_at
        )

    @classmethod
    def start(
        cls,
        task: Task,
        now: float,
        *,
        deadline: float | None,
        has_callback: bool,
        policy: PollPolicy,
        completions: CompletionModel,
    ) -> Entry:
        """Begin tracking *task* at *now*, aged from its creation when *completions* knows it."""
        times: CompletionTimes | None = None
        born = now
        started = completions.started(task.id)
        if started is not None:
            times, created = started
            born = min(now, created)
        entry = cls(task, born, deadline, has_callback)
        if policy.for_kind(task.kind).expected is not None:
            # A task this client did not submit is only known by its kind.
            entry.times = times if times is not None else completions.times((task.kind.name,))
        return entry

    def next_gap(
        self,
        policy: PollPolicy,
        now: float,
        listing: bool,
        rng: random.Random | None,
        lead: float = 0.0,
    ) -> float:
        """Seconds from *now* to this task's next check.

        Args:
            policy: the scheduler's policy (its *per_kind* entry for this task applies).
            now: the clock's time.
            listing: the scheduler checks batchable tasks through a list endpoint right now.
            rng: the random source for jitter.
            lead: seconds one check of every tracked task takes at the rate budget (see
                [`window_interval`][kling_async.scheduler.PollPolicy.window_interval]).
        """
        if self.has_callback:
            return policy.for_kind(self.task.kind).callback_interval
        if self.checks and self.batchable and (listing or self.listed):
            # No jitter: tasks that fall due together share one list request. A task checked
            # by list keeps this pace when it is the last one left (checked by its own GET
            # then): the same one request per gap, not a back-off that would make its end
            # wait up to max_interval.
            own = policy.for_kind(self.task.kind)
            return min(own.list_interval, own.max_interval)
        age = now - self.added_at
        if self.times is not None:
            own = policy.for_kind(self.task.kind)
            if own.expected is not None:
                window = self.times.window_or(own.expected)
                gap = own.window_interval(
                    age,
                    window,
                    rng=rng,
                    lead=lead,
                    checked=self.checks > 0,
                    ends_by=self.times.ends_by(),
                )
                # Progress says when it will finish: close in on that, halving the distance
                # and landing a full gap short of it, so an estimate that is too late is
                # corrected on the way rather than overshot.
                ahead = self.eta - age
                return max(gap, min(ahead / 2, ahead - own.detect_gap))
        return policy.interval(age, self.checks, self.task.kind, rng=rng)

    def read_progress(self, policy: PollPolicy, task: Task, age: float) -> None:
        """Estimate when *task* finishes from its ``progress`` (a gateway's ``"NN%"``).

        The rate is taken from the first reading to the latest, so it gets more precise as the
        task runs; a task whose progress does not move gives no estimate.
        """
        if not policy.for_kind(task.kind).use_progress:
            return
        percent = progress_of(task)
        if percent is None:
            return
        anchor = self.progress
        if anchor is None:
            self.progress = (age, percent)
            return
        first_age, first_percent = anchor
        if percent > first_percent and age > first_age:
            rate = (percent - first_percent) / (age - first_age)
            self.eta = age + (100 - percent) / rate

    def learn(self, policy: PollPolicy, task: Task, now: float) -> None:
        """Record how long *task* took, for the tasks like it still to come.

        The server's own stamps are exact; without them the finish lies between the last check
        that found it unfinished and this one, and the middle is kept when that is narrow.
        Failures are not learnt: a task refused early says nothing of how long videos take.
        """
        times = self.times
        if times is None or not task.succeeded:
            return
        if task.created_at is not None and task.updated_at is not None:
            times.add((task.updated_at - task.created_at).total_seconds())
            return
        age = now - self.added_at
        gap = policy.for_kind(task.kind).detect_gap
        if self.open_age >= 0 and age - self.open_age <= 2 * gap:
            times.add((self.open_age + age) / 2)

    def failure_gap(self, policy: PollPolicy) -> float:
        """Seconds before checking again after ``failures`` failed checks in a row.

        ``min_interval``, doubling per failure up to ``max_interval``. This is not a request
        retry (the fetch function retried its requests already): it only moves the task's next
        check, within its deadline and the scheduler's retry budget.
        """
        own = policy.for_kind(self.task.kind)
        # The exponent is capped: with no retry budget, failures can count past a float's range.
        return min(own.max_interval, own.min_interval * 2.0 ** min(self.failures - 1, 30))
