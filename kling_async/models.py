"""Pure data: the requests you send and the tasks you get back.

Nothing here does I/O. Requests check the rules that hold on every provider when they are built
(``mode`` is ``std`` or ``pro``, a ``simple`` camera move has exactly one non-zero value); limits
that differ between providers (prompt length) are checked by :mod:`kling_async.validation` with the
client's :class:`~kling_async.RequestLimits`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypeAlias

import attrs

from .errors import ValidationError

__all__ = [
    "CameraConfig",
    "CameraControl",
    "ImageToVideo",
    "MultiPrompt",
    "Task",
    "TaskKind",
    "TaskRequest",
    "TaskStatus",
    "TextToVideo",
    "Video",
]

Mode: TypeAlias = Literal["std", "pro"]
CameraType: TypeAlias = Literal[
    "simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"
]


class TaskStatus(str, enum.Enum):
    """Where a task is in its life.

    The server's spellings are normalised: ``succeed``, ``succeeded``, ``SUCCESS`` and
    ``completed`` all become :attr:`SUCCEED`. A status the client does not know becomes
    :attr:`UNKNOWN` (the original text stays in :attr:`Task.raw_status`) and is polled again.
    """

    SUBMITTED = "submitted"
    PROCESSING = "processing"
    SUCCEED = "succeed"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def is_finished(self) -> bool:
        """``True`` for :attr:`SUCCEED` and :attr:`FAILED`."""
        return self in (TaskStatus.SUCCEED, TaskStatus.FAILED)

    @classmethod
    def parse(cls, text: str) -> TaskStatus:
        """Map any provider's spelling of a status onto a member (never raises).

        Examples:
            >>> TaskStatus.parse("SUCCESS"), TaskStatus.parse("in_progress")
            (<TaskStatus.SUCCEED: 'succeed'>, <TaskStatus.PROCESSING: 'processing'>)
        """
        return _STATUS_ALIASES.get(text.strip().lower().replace("-", "_"), cls.UNKNOWN)


_STATUS_ALIASES = {
    "submitted": TaskStatus.SUBMITTED,
    "queued": TaskStatus.SUBMITTED,
    "not_start": TaskStatus.SUBMITTED,
    "pending": TaskStatus.SUBMITTED,
    "processing": TaskStatus.PROCESSING,
    "in_progress": TaskStatus.PROCESSING,
    "running": TaskStatus.PROCESSING,
    "succeed": TaskStatus.SUCCEED,
    "succeeded": TaskStatus.SUCCEED,
    "success": TaskStatus.SUCCEED,
    "completed": TaskStatus.SUCCEED,
    "failed": TaskStatus.FAILED,
    "failure": TaskStatus.FAILED,
    "fail": TaskStatus.FAILED,
    "error": TaskStatus.FAILED,
}


@attrs.frozen
class TaskKind:
    """Which endpoint created a task; the query path depends on it.

    Adding a new capability (omni-video, effects, image generation) is one more instance in
    :mod:`kling_async.kinds`, not a new code path.

    Attributes:
        name: a short stable name, stored in journals (``"text2video"``).
        path: the resource path below the provider's prefix (``"videos/text2video"``).
        request_type: the request class that creates this kind of task.
    """

    name: str
    path: str
    request_type: type[Any] = attrs.field(repr=False, eq=False)


@attrs.frozen
class Video:
    """One generated video.

    Attributes:
        id: the video id (used by video-extend and lip-sync).
        url: where to download it; expires (30 days at Kling, perhaps sooner at gateways).
        watermark_url: the watermarked variant, when the server gives one.
        duration: length in seconds (the wire says ``"5.042"``).
    """

    id: str
    url: str
    watermark_url: str | None = None
    duration: float | None = None


@attrs.frozen
class Task:
    """A task as the server last described it.

    Attributes:
        id: the server's task id (a numeric string; kept as ``str``).
        kind: which endpoint created it.
        status: normalised status; see :class:`TaskStatus`.
        raw_status: the status text exactly as the server sent it.
        status_msg: the server's explanation, e.g. why a task failed.
        external_task_id: your own id for the task, if it has one.
        created_at: creation time (timezone-aware, UTC).
        updated_at: last update time (timezone-aware, UTC).
        videos: the results, once the task has succeeded.
        raw: the parsed JSON the task came from, for debugging (not compared, not in repr).
    """

    id: str
    kind: TaskKind
    status: TaskStatus
    raw_status: str = ""
    status_msg: str | None = None
    external_task_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    videos: tuple[Video, ...] = ()
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def is_finished(self) -> bool:
        """``True`` once the task has succeeded or failed."""
        return self.status.is_finished

    @property
    def succeeded(self) -> bool:
        """``True`` when the task succeeded."""
        return self.status is TaskStatus.SUCCEED

    @property
    def failed(self) -> bool:
        """``True`` when the task failed."""
        return self.status is TaskStatus.FAILED


def _fail(field: str, message: str) -> ValidationError:
    return ValidationError(field, message)


_CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")


@attrs.frozen
class CameraConfig:
    """The six camera moves of a ``simple`` camera control; each in [-10, 10].

    Exactly one must be non-zero (checked by :class:`CameraControl`). ``pan`` and ``tilt`` follow
    the current documentation: pan rotates around the vertical axis (negative = left), tilt
    around the horizontal axis (negative = down).
    """

    horizontal: float = 0
    vertical: float = 0
    pan: float = 0
    tilt: float = 0
    roll: float = 0
    zoom: float = 0

    def __attrs_post_init__(self) -> None:
        for axis in _CAMERA_AXES:
            value = getattr(self, axis)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _fail(f"camera_control.config.{axis}", f"must be a number, got {value!r}")
            if not -10 <= value <= 10:
                raise _fail(f"camera_control.config.{axis}", f"must be in [-10, 10], got {value}")


@attrs.frozen
class CameraControl:
    """How the camera moves.

    ``type="simple"`` needs a :class:`CameraConfig` with exactly one non-zero value; the four
    presets take no config.

    Examples:
        >>> CameraControl(type="simple", config=CameraConfig(zoom=5)).config.zoom
        5
        >>> CameraControl(type="forward_up").config is None
        True
    """

    type: CameraType
    config: CameraConfig | None = None

    def __attrs_post_init__(self) -> None:
        if self.type not in _CAMERA_TYPES:
            raise _fail("camera_control.type", f"must be one of {', '.join(_CAMERA_TYPES)}")
        if self.type == "simple":
            if self.config is None:
                raise _fail("camera_control.config", "is required when type is 'simple'")
            moving = [axis for axis in _CAMERA_AXES if getattr(self.config, axis) != 0]
            if len(moving) != 1:
                raise _fail(
                    "camera_control.config",
                    f"exactly one of {', '.join(_CAMERA_AXES)} must be non-zero "
                    f"(got {len(moving)}: {', '.join(moving) or 'none'})",
                )
        elif self.config is not None:
            raise _fail("camera_control.config", f"must be omitted for preset {self.type!r}")


_CAMERA_TYPES: tuple[str, ...] = (
    "simple",
    "down_back",
    "forward_up",
    "right_turn_forward",
    "left_turn_forward",
)


@attrs.frozen
class MultiPrompt:
    """One shot of a multi-shot video (kling-v3): its index, prompt and duration in seconds."""

    index: int
    prompt: str
    duration: str = attrs.field(converter=str)


def _duration(value: str | int) -> str:
    # The API wants a string; a caller writing duration=5 means "5".
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail("duration", f"must be a string such as '5', got {value!r}")
    text = str(value).strip()
    if not text.isdigit():
        raise _fail("duration", f"must be whole seconds such as '5' or '10', got {value!r}")
    return text


def _optional_duration(value: str | int | None) -> str | None:
    return None if value is None else _duration(value)


def _check_mode(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and value not in ("std", "pro"):
        raise _fail(attribute.name, f"must be 'std' or 'pro', got {value!r}")


def _check_unit(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not 0 <= value <= 1:
        raise _fail(attribute.name, f"must be in [0, 1], got {value}")


def _check_on_off(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and value not in ("on", "off"):
        raise _fail(attribute.name, f"must be 'on' or 'off', got {value!r}")


def _check_text(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not isinstance(value, str):
        raise _fail(attribute.name, f"must be a string, got {type(value).__name__}")


def _check_image(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise _fail(attribute.name, "must be an image URL or raw base64 text")
    if value.startswith("data:"):
        raise _fail(attribute.name, "must be raw base64 without a 'data:...;base64,' prefix")


@attrs.frozen(kw_only=True)
class _Common:
    """Fields every create request carries."""

    model_name: str | None = attrs.field(default=None, validator=_check_text)
    mode: Mode | None = attrs.field(default=None, validator=_check_mode)
    duration: str = attrs.field(default="5", converter=_duration)
    cfg_scale: float | None = attrs.field(default=None, validator=_check_unit)
    sound: Literal["on", "off"] | None = attrs.field(default=None, validator=_check_on_off)
    watermark: bool | None = None
    callback_url: str | None = attrs.field(default=None, validator=_check_text)
    external_task_id: str | None = attrs.field(default=None, validator=_check_text)


@attrs.frozen(kw_only=True)
class TextToVideo(_Common):
    """A text-to-video task (``POST .../videos/text2video``).

    Every documented field is here; ``None`` means "leave it out and let the server choose".
    ``duration`` travels as a string (``"5"``); ``mode`` is ``"std"`` or ``"pro"`` (never
    ``"standard"``, which the live API rejects). ``watermark`` becomes
    ``watermark_info: {"enabled": ...}`` on the wire.

    Examples:
        >>> TextToVideo(prompt="A beach at sunset", duration=10, mode="pro").duration
        '10'
    """

    prompt: str | None = attrs.field(default=None, validator=_check_text)
    negative_prompt: str | None = attrs.field(default=None, validator=_check_text)
    aspect_ratio: str | None = attrs.field(default=None, validator=_check_text)
    camera_control: CameraControl | None = None
    multi_shot: bool | None = None
    shot_type: Literal["customize", "intelligence"] | None = None
    multi_prompt: tuple[MultiPrompt, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )

    def __attrs_post_init__(self) -> None:
        customised = bool(self.multi_shot) and self.shot_type == "customize"
        if not customised and (self.prompt is None or not self.prompt.strip()):
            raise _fail("prompt", "is required (and must not be blank)")
        if self.shot_type not in (None, "customize", "intelligence"):
            raise _fail("shot_type", "must be 'customize' or 'intelligence'")
        if self.multi_prompt is not None:
            if not self.multi_shot:
                raise _fail("multi_prompt", "needs multi_shot=True")
            if not 1 <= len(self.multi_prompt) <= 6:
                raise _fail("multi_prompt", "must hold 1 to 6 shots")
            total = sum(int(shot.duration) for shot in self.multi_prompt)
            if total != int(self.duration):
                raise _fail(
                    "multi_prompt",
                    f"shot durations add up to {total}s, but duration is {self.duration}s",
                )


@attrs.frozen(kw_only=True)
class ImageToVideo(_Common):
    """An image-to-video task (``POST .../videos/image2video``).

    ``image`` is a URL or raw base64 (no ``data:`` prefix). ``image`` + ``image_tail``, the motion
    masks and ``camera_control`` are mutually exclusive, as the API documents.

    Examples:
        >>> ImageToVideo(image="https://example.test/cat.png", prompt="The cat waves").prompt
        'The cat waves'
    """

    image: str | None = attrs.field(default=None, validator=_check_image)
    image_tail: str | None = attrs.field(default=None, validator=_check_image)
    prompt: str | None = attrs.field(default=None, validator=_check_text)
    negative_prompt: str | None = attrs.field(default=None, validator=_check_text)
    aspect_ratio: str | None = attrs.field(default=None, validator=_check_text)
    static_mask: str | None = attrs.field(default=None, validator=_check_image)
    dynamic_masks: tuple[Mapping[str, Any], ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )
    camera_control: CameraControl | None = None
    voice_list: tuple[Mapping[str, Any], ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )
    element_list: tuple[Mapping[str, Any], ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )

    def __attrs_post_init__(self) -> None:
        if self.image is None and self.image_tail is None:
            raise _fail("image", "is required (or image_tail)")
        groups = {
            "image_tail": self.image_tail is not None,
            "static_mask/dynamic_masks": self.static_mask is not None or bool(self.dynamic_masks),
            "camera_control": self.camera_control is not None,
        }
        chosen = [name for name, present in groups.items() if present]
        if len(chosen) > 1:
            raise _fail(chosen[1], f"cannot be combined with {chosen[0]}")
        if self.dynamic_masks is not None and len(self.dynamic_masks) > 6:
            raise _fail("dynamic_masks", "at most 6 masks")


TaskRequest: TypeAlias = TextToVideo | ImageToVideo
"""Any request that creates a task."""
