"""When to check a tracked task again: [`PollPolicy`][kling_async.scheduler.PollPolicy] (re-exported by ``kling_async.scheduler``)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import ConfigurationError
from .models import TaskKind


def _number(value: object) -> bool:
    """A real number (``True`` is not one here); NaN fails every comparison below."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (_number(value) and value > 0):
        raise ConfigurationError(f"PollPolicy.{attribute.name} must be > 0, got {value!r}")


def _at_least_one(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (_number(value) and value >= 1):
        raise ConfigurationError(f"PollPolicy.{attribute.name} must be >= 1, got {value!r}")


def _fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (_number(value) and 0 <= value < 1):
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
        per_kind: policies for particular task kinds, by ``TaskKind.name``; the timing
            fields of the matching policy replace these (*max_in_flight* stays global).
        callback_interval: the gap for tasks whose result also arrives by webhook; polling is
            then only a safety net.
        list_interval: the gap after the first check for tasks checked through a list endpoint
            (a ``batch_fetch``), capped at *max_interval*, while two or more tasks are tracked.
            One list request covers every such task, so these do not back off: the cost is one
            request per gap, however many tasks are tracked. A list read before a task's first
            check never puts that check later (only *min_interval* after the read, at the
            soonest): the first check is where the task may have finished.
        detect_gap: with *expected* set, the gap between checks while a task is inside the
            window where tasks like it finish, so the longest detection latency there. A fixed
            10 s loop's p95 is about 9.5 s plus a request's time (its period is 10 s plus that
            time); 9.5 s gaps match it with a small margin.
        expected: ``(earliest, latest)`` seconds from creation in which tasks finish, before
            anything is learnt: the prior. With it, tasks checked one GET at a time follow
            [`window_interval`][kling_async.scheduler.PollPolicy.window_interval]: no check before *earliest* + *detect_gap*, one every
            *detect_gap* until *latest*, then backing off up to *max_interval*; once a kind of
            request (kind, model, mode, duration) has finished a few times, its learnt window
            ([`kling_async.completion`][kling_async.completion]) replaces the prior. ``None`` keeps the age-based
            schedule of [`interval`][kling_async.scheduler.PollPolicy.interval]. The default is (60, 300), the documented "1-5 min
            typical wait", when *first_delay*, *min_interval* and *max_interval* keep their
            defaults, and ``None`` when any of them is set: a policy tuned by hand keeps its
            meaning.
        use_progress: with *expected* set, when answers carry a ``progress`` percentage
            (CometAPI's gateway does), estimate the finish from how fast it moves and skip
            ahead towards it: each gap is at least half the estimated time left.

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
    detect_gap: float = attrs.field(default=9.5, validator=_positive)
    use_progress: bool = True
    expected: tuple[float, float] | None = attrs.field(
        default=attrs.Factory(lambda self: _default_expected(self), takes_self=True)
    )

    def __attrs_post_init__(self) -> None:
        if self.min_interval > self.max_interval:
            raise ConfigurationError(
                f"PollPolicy.min_interval ({self.min_interval}) must not exceed "
                f"max_interval ({self.max_interval})"
            )
        if self.expected is not None:
            earliest, latest = self.expected
            if not 0 <= earliest < latest:
                raise ConfigurationError(
                    f"PollPolicy.expected must be (earliest, latest) with 0 <= earliest < latest, "
                    f"got {self.expected!r}"
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
            rng: the random source for jitter; the ``random`` module when omitted.

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
        elif policy.min_interval == policy.max_interval:
            base = policy.max_interval  # a constant policy: no back-off to work out
        else:
            # Cap the exponent: a task checked thousands of times must not overflow the float.
            steps = min(checks - 1, 200)
            base = min(policy.max_interval, policy.min_interval * policy.backoff**steps)
            base = min(policy.max_interval, max(base, age / 10))
        if policy.jitter:
            source = rng if rng is not None else random
            base *= 1 + source.uniform(-policy.jitter, policy.jitter)
        return base

    def window_interval(
        self,
        age: float,
        window: tuple[float, float],
        *,
        rng: random.Random | None = None,
        lead: float = 0.0,
        checked: bool = False,
        ends_by: float | None = None,
    ) -> float:
        """Return the seconds to wait before checking a task expected to finish in *window*.

        Checks go where the task may have finished: none before *earliest* + ``detect_gap``
        (a task finishing in between is seen at that check, no later than a fixed loop would
        see it), then one every ``detect_gap`` until *latest*, then further apart the further
        past *latest* the task runs (a backlog), up to ``max_interval``. Jitter only moves the
        first check earlier (by up to ``jitter`` of a gap), so that tasks created together are
        checked apart while the detection latency stays within ``detect_gap``.

        Args:
            age: seconds since the task was created.
            window: ``(earliest, latest)`` seconds from creation in which tasks like it finish.
            rng: the random source for jitter; the ``random`` module when omitted.
            lead: seconds that one check of every tracked task takes at the rate budget
                (tracked tasks / requests per second). When it exceeds a jittered gap, first
                checks spread over that many seconds before the first one due, so that many
                tasks created together are not all due at once in a queue that takes *lead*
                to drain (their first checks come before *earliest*, where budget is free).
            checked: the task was checked before (a first check that *lead* put before
                *earliest*: while *lead* spreads checks, the next one follows *lead* later,
                keeping the round's order; without a spread the schedule is as if unchecked).
            ends_by: seconds from creation by which the tasks like it seen so far finished
                (the learnt window's own latest bound, which *window* may extend to the
                prior's). When it comes before *earliest* + ``detect_gap``, tasks like it finish
                in a span shorter than a gap: the first check goes just after that span, with
                jitter moving it later rather than earlier, and sees such a task within about a
                second of its finish at the same single check.

        Returns:
            the delay in seconds (> 0).

        Examples:
            >>> policy = PollPolicy(jitter=0)
            >>> [policy.window_interval(age, (60, 300)) for age in (0, 59, 65, 290, 600)]
            [69.5, 10.5, 9.5, 9.5, 19.0]
            >>> policy.window_interval(0, (180, 300), ends_by=181.5)  # tasks like it: 180-181.5 s
            181.5
        """
        earliest, latest = window
        gap = self.detect_gap
        if age < earliest:
            first = earliest + gap
            narrow = ends_by is not None and ends_by < first
            if narrow and ends_by is not None:  # (the second test is for the type checker)
                first = ends_by
            to_first = first - age
            spreading = lead > gap * self.jitter
            if narrow and not spreading:
                # Later, not earlier: a check before the span ends would miss the tasks that
                # finish at its end and see them only a whole gap later.
                later = (rng if rng is not None else random).uniform(0, gap * self.jitter)
                return max(to_first + later, _FIRST_CHECK_FLOOR)
            if checked and spreading:
                # Spread ahead of the window: keep the round's pace, and be back by the time
                # an unspread first check would come.
                return max(min(max(gap, lead), to_first), _FIRST_CHECK_FLOOR)
            # Jitter the phase only: tasks created together then stay apart, and every later
            # gap is a whole detect_gap (a shorter one would only cost requests).
            spread = lead if spreading else gap * self.jitter
            # Never ahead of now: a round longer than the time left spreads over what is left.
            spread = min(spread, to_first - _FIRST_CHECK_FLOOR)
            ahead = (rng if rng is not None else random).uniform(0, spread) if spread > 0 else 0.0
            return max(to_first - ahead, _FIRST_CHECK_FLOOR)
        if age < latest:
            return gap
        stretched = gap * (1 + (age - latest) / max(latest, gap))
        return min(max(self.max_interval, gap), stretched)


_FIRST_CHECK_FLOOR = 0.001
"""The soonest a first check spread ahead by ``lead`` may come (a delay must be > 0)."""

DEFAULT_EXPECTED = (60.0, 300.0)
"""Seconds from creation in which a video task finishes, as documented (a 1-5 min typical wait)."""

_CLASSIC_TIMING = (5.0, 5.0, 30.0)


def _default_expected(policy: PollPolicy) -> tuple[float, float] | None:
    timing = (policy.first_delay, policy.min_interval, policy.max_interval)
    return DEFAULT_EXPECTED if timing == _CLASSIC_TIMING else None
