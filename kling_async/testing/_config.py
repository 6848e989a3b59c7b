"""Configuration records for [`FakeKlingServer`][kling_async.testing.server.FakeKlingServer]."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, get_args

import attrs

if TYPE_CHECKING:
    from ._tasks import FakeTask

__all__ = [
    "API_FAULTS",
    "DOWNLOAD_FAULTS",
    "FAULT_KINDS",
    "FaultKind",
    "Faults",
    "RouteKind",
    "Timeline",
    "Validation",
]

FaultKind = Literal[
    "500",
    "503",
    "504",
    "drop_before_create",
    "drop_after_create",
    "slow",
    "malformed_text",
    "malformed_no_data",
    "malformed_types",
    "cut_download",
]
"""Names of injectable faults (see [`Faults`][kling_async.testing.Faults] and [`FaultInjector`][kling_async.testing.FaultInjector])."""

FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)

API_FAULTS: frozenset[FaultKind] = frozenset(FAULT_KINDS) - {"cut_download"}
"""Faults that make sense on the API site (create, query, list)."""

DOWNLOAD_FAULTS: frozenset[FaultKind] = frozenset(
    {"500", "503", "504", "drop_before_create", "slow", "cut_download"}
)
"""Faults that make sense on the CDN site."""

RouteKind = Literal["create", "query", "list", "video", "other"]
"""How the emulator classifies a request, for statistics and fault targeting."""


def _unit_interval(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value!r}")


@attrs.frozen
class Timeline:
    """How a task moves through ``submitted → processing → succeed|failed``.

    State is a pure function of the server clock, so a test can inject a clock and step it
    instead of sleeping.
    """

    queue_seconds: float = 0.05
    """Time spent ``submitted``."""
    processing_seconds: float | Callable[[FakeTask], float] = 0.2
    """Time spent ``processing``, or a function of the task that returns it."""
    jitter: float = attrs.field(default=0.0, validator=_unit_interval)
    """Both phases are scaled by a seeded factor in ``[1 - jitter, 1 + jitter]``."""
    fail_rate: float = attrs.field(default=0.0, validator=_unit_interval)
    """The share of tasks that end ``failed``: in any run of *n* tasks, ``n * fail_rate`` of them
    give or take one, at seeded random places."""
    seed: int = 0
    """Seed for jitter and random failures."""
    fail_marker: str = "FAIL"
    """A prompt containing this text always fails with [`fail_message`][kling_async.testing.Timeline.fail_message]."""
    fail_message: str = "content risk control"
    """``task_status_msg`` for marker failures and for [`FakeKlingServer.set_status`][kling_async.testing.server.FakeKlingServer.set_status]."""
    random_fail_message: str = "generation failed, please try again"
    """``task_status_msg`` for failures drawn by [`fail_rate`][kling_async.testing.Timeline.fail_rate]."""


@attrs.frozen
class Faults:
    """Random fault injection; the one-shot queues live on ``server.faults``.

    Each request on one of [`routes`][kling_async.testing.Faults.routes] suffers, with probability [`rate`][kling_async.testing.Faults.rate], one fault drawn
    uniformly from those of [`kinds`][kling_async.testing.Faults.kinds] that apply to it.
    """

    rate: float = attrs.field(default=0.0, validator=_unit_interval)
    """Probability that a request gets a random fault."""
    kinds: tuple[FaultKind, ...] = (
        "500",
        "503",
        "drop_before_create",
        "drop_after_create",
        "malformed_text",
    )
    """Faults to draw from."""
    routes: tuple[RouteKind, ...] = ("create", "query", "list")
    """Route kinds that random faults hit (add ``"video"`` to disturb downloads too)."""
    seed: int = 0
    """Seed of the fault random generator."""
    slow_seconds: float = 1.0
    """Delay of a ``"slow"`` fault when none is given."""
    create_answer_delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    """Seconds every successful create waits, *after* the task is recorded, before its answer is
    sent: the window in which a client can die having paid for a task it never hears about."""

    def __attrs_post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")


@attrs.frozen
class Validation:
    """Limits the emulator enforces on create bodies (HTTP 400, code 1201 when broken)."""

    prompt_max: int = 2500
    """Maximum prompt length in characters (CometAPI documents 500)."""
    negative_prompt_max: int = 2500
    """Maximum negative prompt length (CometAPI documents 200)."""
    durations: tuple[str, ...] = ("5", "10")
    """Accepted ``duration`` strings; JSON numbers are always rejected."""
    modes: tuple[str, ...] = ("std", "pro", "4k")
    """Accepted ``mode`` values (``4k``: kling-v3, per one source)."""
    aspect_ratios: tuple[str, ...] = ("16:9", "9:16", "1:1")
    """Accepted text2video ``aspect_ratio`` values."""
    extra_aspect_ratios: tuple[str, ...] = ()
    """More accepted aspect ratios (CometAPI lists 4:3, 3:4, 3:2, 2:3)."""
    model_names: tuple[str, ...] | None = None
    """Accepted ``model_name`` values, or ``None`` for any string."""
