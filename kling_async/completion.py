"""How long tasks take: completion times learnt online, per kind of request, in bounded memory.

The poll scheduler checks a task where it is most likely to finish. That needs an idea of when
tasks *like it* finish, and "like it" is the request's profile: its kind, ``model_name``, ``mode``
and ``duration`` (a 10 s pro video takes longer than a 5 s std one). [`CompletionModel`][kling_async.completion.CompletionModel]
keeps, per profile, the completion times of the last [`SAMPLES`][kling_async.completion.SAMPLES] tasks seen finishing
([`CompletionTimes`][kling_async.completion.CompletionTimes]), so a client learns its own account's timings as it goes and follows
them when they drift (a backlog). Until a profile has [`MIN_SAMPLES`][kling_async.completion.MIN_SAMPLES] finishes, the policy's
documented prior applies (``PollPolicy.expected``).

Memory is bounded twice over: a fixed ring of samples per profile, and at most ``max_profiles``
profiles (the least recently used is dropped). Tasks in flight cost one small tuple each, from
[`CompletionModel.submitted`][kling_async.completion.CompletionModel.submitted] until the task is seen finished.

Examples:
    >>> times = CompletionTimes()
    >>> for seconds in (100, 110, 120, 130, 140):
    ...     times.add(seconds)
    >>> [round(bound, 2) for bound in times.window()]
    [73.92, 146.88]
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from .models import Task

__all__ = [
    "MIN_SAMPLES",
    "SAMPLES",
    "CompletionModel",
    "CompletionTimes",
    "prior_scale",
    "profile_of",
    "progress_of",
]

SAMPLES = 64
"""Completion times kept per profile: the most recent ones, so a drift is followed."""

MIN_SAMPLES = 5
"""Finished tasks a profile needs before its learnt window replaces the prior."""

_TAIL = 0.02
"""The window runs from this quantile to its complement: the rarest 2 % on each side are tails."""

_MAX_SECONDS = 7 * 24 * 3600.0
"""Longer "completion times" are clock or unit mix-ups (seconds read as milliseconds), not data."""


def profile_of(request: object, kind_name: str) -> tuple[str, ...]:
    """Return the profile key of *request*: what makes tasks alike in how long they take.

    Args:
        request: a task request (fields it lacks count as unset).
        kind_name: the task kind's name (``"text2video"``).

    Returns:
        ``(kind_name, model_name, mode, duration)``, unset fields as ``""``.

    Examples:
        >>> from kling_async.models import TextToVideo
        >>> profile_of(TextToVideo(prompt="x", mode="pro", duration="10"), "text2video")
        ('text2video', '', 'pro', '10')
    """
    fields = ("model_name", "mode", "duration")
    return (kind_name, *(_text(getattr(request, name, None)) for name in fields))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def progress_of(task: Task) -> float | None:
    """Return the ``progress`` percentage a gateway put in *task*'s answer, strictly between 0
    and 100, else ``None`` (absent, unreadable, not started or done).

    Examples:
        >>> from kling_async.kinds import TEXT_TO_VIDEO
        >>> from kling_async.models import TaskStatus
        >>> task = Task("1", TEXT_TO_VIDEO, TaskStatus.PROCESSING, raw={"progress": "42%"})
        >>> progress_of(task)
        42.0
    """
    # A running task the scheduler keeps has no raw answer (see Task.raw): its parsed
    # progress (whole percents) stands in.
    value: Any = task.raw.get("progress")
    if value is None:
        value = task.progress
    if isinstance(value, str):
        value = value.strip().rstrip("%")
    try:
        percent = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return percent if 0 < percent < 100 else None


class CompletionTimes:
    """The completion times (seconds from creation to finish) of one profile's latest tasks.

    A ring of the last [`SAMPLES`][kling_async.completion.SAMPLES] values: 8 bytes each, sorted only when asked.
    """

    __slots__ = ("_count", "_learnt", "_next", "_ring", "_sorted", "prior_scale")

    def __init__(self, prior_scale: float = 1.0) -> None:
        """Start empty.

        Args:
            prior_scale: how this profile's documented timings compare with the policy's prior
                (0.5 for the turbo models); see ``prior_scale``.
        """
        self.prior_scale = prior_scale
        self._ring = array("d")
        self._next = 0
        self._count = 0
        self._sorted: list[float] | None = None
        # The learnt window until the next sample: the scheduler asks for it (through
        # window_or and ends_by) at every check of a task of this profile.
        self._learnt: tuple[float, float] | None = None

    def __len__(self) -> int:
        """How many samples are kept (at most [`SAMPLES`][kling_async.completion.SAMPLES])."""
        return len(self._ring)

    def __repr__(self) -> str:
        return f"CompletionTimes(samples={len(self._ring)}, seen={self._count})"

    def add(self, seconds: float) -> None:
        """Record one task's completion time; nonsense (not finite, <= 0, over a week) is ignored.

        Args:
            seconds: from the task's creation to its finish.
        """
        if not (0 < seconds <= _MAX_SECONDS):  # also false for NaN
            return
        self._count += 1
        self._sorted = None
        self._learnt = None
        if len(self._ring) < SAMPLES:
            self._ring.append(seconds)
            return
        self._ring[self._next] = seconds
        self._next = (self._next + 1) % SAMPLES

    def quantile(self, q: float) -> float | None:
        """Return the *q* quantile (0..1, linear interpolation), or ``None`` with no samples."""
        if not self._ring:
            return None
        return _quantile(self._values(), q)

    def window(self) -> tuple[float, float] | None:
        """Return where this profile's tasks finish, ``(earliest, latest)``, once learnt.

        From the 2 % to the 98 % quantile, widened so that a window learnt from few tasks is
        not narrower than the truth: the latest bound by the spread over the sample count (the
        expected distance from the most extreme sample to the true bound), the earliest by
        3.5 times that. A task finishing before the window waits for its first check, so that
        side costs detection latency; one finishing after it only meets checks spread further
        apart.

        Returns:
            ``None`` until [`MIN_SAMPLES`][kling_async.completion.MIN_SAMPLES] completion times are known.
        """
        count = len(self._ring)
        if count < MIN_SAMPLES:
            return None
        if self._learnt is None:
            values = self._values()
            low = _quantile(values, _TAIL)
            high = _quantile(values, 1 - _TAIL)
            pad = (high - low) / count
            self._learnt = max(0.0, low - 3.5 * pad), high + pad
        return self._learnt

    def ends_by(self) -> float | None:
        """Return the learnt window's latest bound, before any prior extends it.

        ``None`` until [`MIN_SAMPLES`][kling_async.completion.MIN_SAMPLES] completion times are known.
        [`window_or`][kling_async.completion.CompletionTimes.window_or] never lets the latest bound
        fall below the prior's; the scheduler still uses this one to place a first check just
        after a narrow span where tasks like it finish.
        """
        learnt = self.window()
        return None if learnt is None else learnt[1]

    def window_or(self, prior: tuple[float, float]) -> tuple[float, float]:
        """Return the window to check in: learnt where known, else *prior* (times
        ``prior_scale``).

        The latest bound never falls below the prior's: tasks of one batch are learnt as they
        finish, the quick ones first, so a window learnt mid-batch is too early at its end, and
        the checks past it would spread out for the slow half of the batch. Past the prior's
        bound, a task is in a backlog.
        """
        low, high = prior[0] * self.prior_scale, prior[1] * self.prior_scale
        learnt = self.window()
        if learnt is None:
            return low, high
        return learnt[0], max(learnt[1], high)

    def _values(self) -> list[float]:
        if self._sorted is None:
            self._sorted = sorted(self._ring)
        return self._sorted


def _quantile(values: list[float], q: float) -> float:
    position = q * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


_PRIOR_SCALES = (("turbo", 0.5),)
"""Documented timings relative to the 1-5 min prior, by a word of the model name (kling-api.md
§7.4: "2.5 turbo pro 5 s about 30-45 s; 10 s about 45-60 s" against "1-5 min typical")."""


def prior_scale(profile: Hashable) -> float:
    """Return how *profile*'s documented timings compare with the policy's prior window.

    Examples:
        >>> prior_scale(("text2video", "kling-v2-5-turbo", "pro", "5"))
        0.5
        >>> prior_scale(("text2video", "kling-v2-6", "std", "5"))
        1.0
    """
    if isinstance(profile, tuple) and len(profile) > 1:
        model = str(profile[1])
        for word, scale in _PRIOR_SCALES:
            if word in model:
                return scale
    return 1.0


class CompletionModel:
    """Completion times per profile, learnt from the tasks a client saw finish.

    Shared by everything one client watches, so what one ``watch()`` learnt serves the next.
    """

    def __init__(self, max_profiles: int = 256) -> None:
        """Create an empty model.

        Args:
            max_profiles: the most profiles kept; the least recently used is dropped beyond.
        """
        self._max_profiles = max(1, max_profiles)
        self._profiles: OrderedDict[Hashable, CompletionTimes] = OrderedDict()
        self._started: dict[str, tuple[CompletionTimes, float]] = {}

    def __repr__(self) -> str:
        return f"CompletionModel(profiles={len(self._profiles)}, in_flight={len(self._started)})"

    def times(self, profile: Hashable) -> CompletionTimes:
        """Return the completion times of *profile*, creating them empty if new."""
        times = self._profiles.get(profile)
        if times is None:
            times = self._profiles[profile] = CompletionTimes(prior_scale(profile))
            if len(self._profiles) > self._max_profiles:
                self._profiles.popitem(last=False)
        else:
            self._profiles.move_to_end(profile)
        return times

    def submitted(self, task_id: str, profile: Hashable, at: float) -> None:
        """Note that *task_id*, of *profile*, was created at clock time *at*.

        The scheduler then measures the task's age from its creation rather than from when it
        started watching it (``submit_many`` first, ``watch`` later).
        """
        # The profile's times, not its key: one object shared by all its tasks in flight.
        self._started[task_id] = (self.times(profile), at)

    def started(self, task_id: str) -> tuple[CompletionTimes, float] | None:
        """Return ``(completion times of its profile, creation clock time)`` for a task noted
        by [`submitted`][kling_async.completion.CompletionModel.submitted]."""
        return self._started.get(task_id)

    def forget(self, task_id: str) -> None:
        """Drop what [`submitted`][kling_async.completion.CompletionModel.submitted] noted (the task finished)."""
        self._started.pop(task_id, None)
