"""The nested values of video requests: camera moves, shots, motion brushes, voices, elements.

Each checks its own rules when built and also accepts a plain dict (or list of dicts) where a
request takes it; ``models`` holds the requests and tasks that carry them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias

import attrs

from . import _fields
from .errors import ValidationError

__all__ = [
    "CameraConfig",
    "CameraControl",
    "CameraType",
    "DynamicMask",
    "Element",
    "MultiPrompt",
    "TrajectoryPoint",
    "Voice",
    "fail",
]

CameraType: TypeAlias = Literal[
    "simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"
]

_CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
_CAMERA_TYPES: tuple[str, ...] = (
    "simple",
    "down_back",
    "forward_up",
    "right_turn_forward",
    "left_turn_forward",
)

_AXIS = _fields.number_in(-10, 10, path="camera_control.config.")


@attrs.frozen
class CameraConfig:
    """The six camera moves of a ``simple`` camera control; each a number in [-10, 10].

    Exactly one must be non-zero (checked by [`CameraControl`][kling_async.models.CameraControl]). ``pan`` and ``tilt`` follow
    the current documentation: pan rotates around the vertical axis (negative = left), tilt
    around the horizontal axis (negative = down).
    """

    horizontal: float = attrs.field(default=0, validator=_AXIS)
    vertical: float = attrs.field(default=0, validator=_AXIS)
    pan: float = attrs.field(default=0, validator=_AXIS)
    tilt: float = attrs.field(default=0, validator=_AXIS)
    roll: float = attrs.field(default=0, validator=_AXIS)
    zoom: float = attrs.field(default=0, validator=_AXIS)


def _camera_config(value: CameraConfig | Mapping[str, float] | None) -> CameraConfig | None:
    if value is None:
        return None
    return _fields.nested(CameraConfig, "camera_control.config", value)


@attrs.frozen
class CameraControl:
    """How the camera moves.

    ``type="simple"`` needs a [`CameraConfig`][kling_async.models.CameraConfig] with exactly one non-zero value; the four
    presets take no config. ``config`` may also be given as a dict of the six moves.

    Examples:
        >>> CameraControl(type="simple", config=CameraConfig(zoom=5)).config.zoom
        5
        >>> CameraControl(type="simple", config={"pan": -2}).config.pan
        -2
        >>> CameraControl(type="forward_up").config is None
        True
    """

    type: CameraType = attrs.field()
    config: CameraConfig | None = attrs.field(default=None, converter=_camera_config)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.type, str) or self.type not in _CAMERA_TYPES:
            accepted = ", ".join(repr(item) for item in _CAMERA_TYPES)
            raise fail(
                "camera_control.type",
                f"must be one of {accepted}, got {_fields.describe(self.type)}",
            )
        if self.type == "simple":
            if self.config is None:
                raise fail("camera_control.config", "is required when type is 'simple'")
            moving = [axis for axis in _CAMERA_AXES if getattr(self.config, axis) != 0]
            if len(moving) != 1:
                raise fail(
                    "camera_control.config",
                    f"exactly one of {', '.join(_CAMERA_AXES)} must be non-zero "
                    f"(got {len(moving)}: {', '.join(moving) or 'none'})",
                )
        elif self.config is not None:
            raise fail("camera_control.config", f"must be omitted for preset {self.type!r}")


def fail(field: str, message: str) -> ValidationError:
    """The error for *field*: what a request checks raise."""
    return ValidationError(field, message)


def _shot_index(value: int) -> int:
    index = _fields.whole_number("multi_prompt.index", value)
    if index < 1:
        raise fail("multi_prompt.index", f"must be 1 or more, got {index}")
    return index


def _shot_duration(value: str | int) -> str:
    return _fields.seconds("multi_prompt.duration", value)


@attrs.frozen
class MultiPrompt:
    """One shot of a multi-shot video (kling-v3): its index (from 1), prompt and duration.

    ``duration`` is whole seconds and travels as a string, like the task's own ``duration``.
    """

    index: int = attrs.field(converter=_shot_index)
    prompt: str = attrs.field(validator=_fields.text)
    duration: str = attrs.field(converter=_shot_duration)

    def __attrs_post_init__(self) -> None:
        if not self.prompt.strip():
            raise fail("multi_prompt.prompt", "must not be blank")


def _x(value: int | str) -> int:
    return _fields.whole_number("x", value)


def _y(value: int | str) -> int:
    return _fields.whole_number("y", value)


@attrs.frozen
class TrajectoryPoint:
    """One point of a motion-brush trajectory, in pixels from the image's top-left corner."""

    x: int = attrs.field(converter=_x)
    y: int = attrs.field(converter=_y)


def _trajectory(
    value: tuple[TrajectoryPoint | Mapping[str, int], ...],
) -> tuple[TrajectoryPoint, ...]:
    points = _fields.nested_tuple(TrajectoryPoint, "trajectories", value, max_items=77)
    if len(points) < 2:
        raise fail("trajectories", f"needs 2 to 77 points, got {len(points)}")
    return points


@attrs.frozen
class DynamicMask:
    """A motion-brush mask (image2video): the masked area and the path it moves along."""

    mask: str = attrs.field(validator=_fields.image)
    trajectories: tuple[TrajectoryPoint, ...] = attrs.field(converter=_trajectory)


def _text_id(field: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise fail(field, f"must be a non-empty id (text or number), got {_fields.describe(value)}")
    return str(value)


def _voice_id(value: str | int) -> str:
    return _text_id("voice_id", value)


def _element_id(value: str | int) -> str:
    return _text_id("element_id", value)


@attrs.frozen
class Voice:
    """A voice for generated speech (``voice_list``; kling-v2-6 pro and kling-v3)."""

    voice_id: str = attrs.field(converter=_voice_id)


@attrs.frozen
class Element:
    """A subject element to keep consistent across shots (``element_list``; kling-v3)."""

    element_id: str = attrs.field(converter=_element_id)
