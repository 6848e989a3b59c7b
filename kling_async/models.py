"""Pure data: the requests you send and the tasks you get back.

Nothing here does I/O. Requests check the rules that hold on every provider when they are built
(``mode`` is ``std`` or ``pro``, a ``simple`` camera move has exactly one non-zero value); limits
that differ between providers (prompt length) are checked by [`kling_async.validation`][kling_async.validation] with the
client's [`RequestLimits`][kling_async.validation.RequestLimits]. The nested values of video
requests (camera moves, shots, motion brushes, voices, elements) live in the private
``_request_parts`` and are re-exported here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

import attrs

from . import _fields
from ._request_parts import (
    CameraConfig,
    CameraControl,
    DynamicMask,
    Element,
    MultiPrompt,
    TrajectoryPoint,
    Voice,
)
from ._request_parts import CameraType as CameraType
from ._request_parts import fail as _fail
from .media import Audio, Image, audios_in, images_in

if TYPE_CHECKING:
    from .lipsync import AdvancedLipSync
    from .multielements import MultiElements
    from .requests import (
        AvatarImageToVideo,
        ImageExpand,
        ImageGeneration,
        MotionControl,
        MultiImageToImage,
        MultiImageToVideo,
        OmniImage,
        OmniVideo,
        TextToAudio,
        VideoEffects,
        VideoExtend,
        VideoToAudio,
        VirtualTryOn,
    )

__all__ = [
    "MODES",
    "Audio",
    "Image",
    "Result",
    "CameraConfig",
    "CameraControl",
    "DynamicMask",
    "Element",
    "ImageToVideo",
    "MultiPrompt",
    "Task",
    "TaskKind",
    "TaskRequest",
    "TaskStatus",
    "TextToVideo",
    "TrajectoryPoint",
    "Video",
    "Voice",
]

Mode: TypeAlias = Literal["std", "pro", "4k"]


class TaskStatus(str, enum.Enum):
    """Where a task is in its life.

    The server's spellings are normalised: ``succeed``, ``succeeded``, ``SUCCESS`` and
    ``completed`` all become ``SUCCEED``. A status the client does not know becomes
    ``UNKNOWN`` (the original text stays in ``Task.raw_status``) and is polled again.
    """

    SUBMITTED = "submitted"
    PROCESSING = "processing"
    SUCCEED = "succeed"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def is_finished(self) -> bool:
        """``True`` for ``SUCCEED`` and ``FAILED``."""
        # Asked once per status check: a set look-up, not enum attribute look-ups and __eq__.
        return self in _FINISHED

    @classmethod
    def parse(cls, text: str) -> TaskStatus:
        """Map any provider's spelling of a status onto a member (never raises).

        Examples:
            >>> TaskStatus.parse("SUCCESS"), TaskStatus.parse("in_progress")
            (<TaskStatus.SUCCEED: 'succeed'>, <TaskStatus.PROCESSING: 'processing'>)
        """
        exact = _STATUS_ALIASES.get(text)  # most answers spell it as the table does
        if exact is not None:
            return exact
        return _STATUS_ALIASES.get(text.strip().lower().replace("-", "_"), cls.UNKNOWN)


_FINISHED = frozenset({TaskStatus.SUCCEED, TaskStatus.FAILED})

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
    [`kling_async.kinds`][kling_async.kinds], not a new code path.

    Attributes:
        name: a short stable name, stored in journals (``"text2video"``).
        path: the resource path below the provider's prefix (``"videos/text2video"``).
        request_type: the request class that creates this kind of task.
        results: what a success yields: ``"videos"``, ``"images"`` or ``"audios"``.
        kling_only: ``True`` where only Kling itself documents the kind (not CometAPI).
        uses_video_model: whether the client's default video ``model_name``
            (``KlingClient.model_name``) applies to
            requests of this kind that name no model.
    """

    name: str
    path: str
    request_type: type[Any] = attrs.field(repr=False, eq=False)
    results: Literal["videos", "images", "audios"] = attrs.field(default="videos", eq=False)
    kling_only: bool = attrs.field(default=False, eq=False, repr=False)
    uses_video_model: bool = attrs.field(default=False, eq=False, repr=False)


@attrs.frozen
class Video:
    """One generated video.

    Attributes:
        id: the video id (used by video-extend and lip-sync).
        url: where to download it; expires (30 days at Kling, perhaps sooner at gateways).
        watermark_url: the watermarked variant, when the server gives one.
        duration: length in seconds (the wire says ``"5.042"``).
    """

    suffix: ClassVar[str] = ".mp4"
    id: str
    url: str
    watermark_url: str | None = None
    duration: float | None = None


Result: TypeAlias = Video | Image | Audio
"""One downloadable result of a task: a video, an image or a sound track."""


@attrs.frozen
class Task:
    """A task as the server last described it.

    Attributes:
        id: the server's task id (a numeric string; kept as ``str``).
        kind: which endpoint created it.
        status: normalised status; see [`TaskStatus`][kling_async.models.TaskStatus].
        raw_status: the status text exactly as the server sent it.
        status_msg: the server's explanation, e.g. why a task failed.
        external_task_id: your own id for the task, if it has one.
        created_at: creation time (timezone-aware, UTC).
        updated_at: last update time (timezone-aware, UTC).
        videos: the videos, once a video task has succeeded.
        upstream_id: the upstream's (Kling's) task id when a gateway answers with ids of its
            own; callbacks sent straight from the upstream carry this one.
        progress: percent done, where a gateway reports it (``"45%"`` becomes ``45``).
        raw: the parsed JSON the task came from, for debugging (not compared, not in repr).
            Tasks the poll scheduler keeps while they run hold an empty mapping here (100k
            tracked answers would cost about 1.5 KiB each); a finished task, and any task
            [`KlingClient.get_task`][kling_async.client.KlingClient.get_task] returns, holds
            its answer.
        fingerprint: a digest of the answer body the task was read from, or ``None``; the
            client compares it with the next answer's to skip re-reading an unchanged one
            (not compared, not in repr).

    Image and audio tasks list their results in [`images`][kling_async.models.Task.images] and [`audios`][kling_async.models.Task.audios];
    [`results`][kling_async.models.Task.results] lists every result whatever the kind.
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
    upstream_id: str | None = None
    progress: int | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    fingerprint: bytes | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def is_finished(self) -> bool:
        """``True`` once the task has succeeded or failed."""
        return self.status in _FINISHED  # asked once per status check: one look-up

    @property
    def images(self) -> tuple[Image, ...]:
        """The images of an image task (image generation, try-on, ...), once it has succeeded."""
        return images_in(self.raw)

    @property
    def audios(self) -> tuple[Audio, ...]:
        """The sound tracks of an audio task (text-to-audio, video-to-audio)."""
        return audios_in(self.raw)

    @property
    def results(self) -> tuple[Result, ...]:
        """Every downloadable result: the videos, then the images, then the sound tracks."""
        return (*self.videos, *self.images, *self.audios)

    @property
    def succeeded(self) -> bool:
        """``True`` when the task succeeded."""
        return self.status is TaskStatus.SUCCEED

    @property
    def failed(self) -> bool:
        """``True`` when the task failed."""
        return self.status is TaskStatus.FAILED


class _NoRaw(dict[str, Any]):
    """An empty mapping that refuses changes; pickles and copies as the one ``NO_RAW``."""

    __slots__ = ()

    def _refuse(self, *_: object, **__: object) -> Any:
        raise TypeError("a task kept without its raw answer has nothing to change")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_no_raw, ())

    def __copy__(self) -> _NoRaw:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _NoRaw:
        return self


def _no_raw() -> Mapping[str, Any]:
    return NO_RAW


NO_RAW: Mapping[str, Any] = _NoRaw()
"""The empty, read-only ``raw`` of a running task the poll scheduler keeps (see ``Task.raw``)."""


MODES: tuple[str, ...] = ("std", "pro", "4k")
"""Every ``mode`` any model documents; which model takes which is a model rule."""


def _duration(value: str | int) -> str:
    return _fields.seconds("duration", value)


def _camera_control(value: CameraControl | Mapping[str, Any] | None) -> CameraControl | None:
    if value is None:
        return None
    return _fields.nested(CameraControl, "camera_control", value)


def _multi_prompt(
    value: tuple[MultiPrompt | Mapping[str, Any], ...] | list[Any] | None,
) -> tuple[MultiPrompt, ...] | None:
    if value is None:
        return None
    return _fields.nested_tuple(MultiPrompt, "multi_prompt", value, max_items=6)


def _dynamic_masks(
    value: tuple[DynamicMask | Mapping[str, Any], ...] | list[Any] | None,
) -> tuple[DynamicMask, ...] | None:
    if value is None:
        return None
    return _fields.nested_tuple(DynamicMask, "dynamic_masks", value, max_items=6)


def _voice_list(
    value: tuple[Voice | Mapping[str, Any], ...] | list[Any] | None,
) -> tuple[Voice, ...] | None:
    if value is None:
        return None
    return _fields.nested_tuple(Voice, "voice_list", value, max_items=2)


def _element_list(
    value: tuple[Element | Mapping[str, Any], ...] | list[Any] | None,
) -> tuple[Element, ...] | None:
    if value is None:
        return None
    return _fields.nested_tuple(Element, "element_list", value, max_items=7)


@attrs.frozen(kw_only=True)
class _Common:
    """Fields every create request carries.

    ``relax_rules`` is not sent: it names model rules ([`kling_async.model_rules`][kling_async.model_rules]) to skip
    for this request, for when the documentation is behind the API.
    """

    model_name: str | None = attrs.field(default=None, validator=_fields.text)
    mode: Mode | None = attrs.field(default=None, validator=_fields.choice(*MODES))
    duration: str = attrs.field(default="5", converter=_duration)
    cfg_scale: float | None = attrs.field(default=None, validator=_fields.number_in(0, 1))
    sound: Literal["on", "off"] | None = attrs.field(
        default=None, validator=_fields.choice("on", "off")
    )
    watermark: bool | None = attrs.field(default=None, validator=_fields.flag)
    callback_url: str | None = attrs.field(
        default=None, validator=_fields.callback, repr=_fields.callback_repr
    )
    external_task_id: str | None = attrs.field(default=None, validator=_fields.text)
    relax_rules: frozenset[str] = attrs.field(factory=frozenset, converter=_fields.rule_names)


@attrs.frozen(kw_only=True)
class TextToVideo(_Common):
    """A text-to-video task (``POST .../videos/text2video``).

    Every documented field is here; ``None`` means "leave it out and let the server choose".
    ``duration`` travels as a string (``"5"``); ``mode`` is ``"std"``, ``"pro"`` or ``"4k"``
    (never ``"standard"``, which the live API rejects). ``watermark`` becomes
    ``watermark_info: {"enabled": ...}`` on the wire. ``camera_control`` and ``multi_prompt``
    also take plain dicts.

    Examples:
        >>> TextToVideo(prompt="A beach at sunset", duration=10, mode="pro").duration
        '10'
    """

    prompt: str | None = attrs.field(default=None, validator=_fields.text)
    negative_prompt: str | None = attrs.field(default=None, validator=_fields.text)
    aspect_ratio: str | None = attrs.field(default=None, validator=_fields.text)
    camera_control: CameraControl | None = attrs.field(default=None, converter=_camera_control)
    multi_shot: bool | None = attrs.field(default=None, validator=_fields.flag)
    shot_type: Literal["customize", "intelligence"] | None = attrs.field(
        default=None, validator=_fields.choice("customize", "intelligence")
    )
    multi_prompt: tuple[MultiPrompt, ...] | None = attrs.field(
        default=None, converter=_multi_prompt
    )
    voice_list: tuple[Voice, ...] | None = attrs.field(default=None, converter=_voice_list)
    element_list: tuple[Element, ...] | None = attrs.field(default=None, converter=_element_list)

    def __attrs_post_init__(self) -> None:
        customised = bool(self.multi_shot) and self.shot_type == "customize"
        if not customised and (self.prompt is None or not self.prompt.strip()):
            raise _fail("prompt", "is required (and must not be blank)")
        if self.multi_prompt is not None:
            if not self.multi_shot:
                raise _fail("multi_prompt", "needs multi_shot=True")
            if not self.multi_prompt:
                raise _fail("multi_prompt", "must hold 1 to 6 shots")
            indexes = [shot.index for shot in self.multi_prompt]
            if len(set(indexes)) != len(indexes):
                raise _fail("multi_prompt", f"shot indexes must differ, got {indexes}")


@attrs.frozen(kw_only=True)
class ImageToVideo(_Common):
    """An image-to-video task (``POST .../videos/image2video``).

    ``image`` is a URL or raw base64 (no ``data:`` prefix). ``image`` + ``image_tail``, the motion
    masks and ``camera_control`` are mutually exclusive, as the API documents (a model rule,
    ``exclusive-fields``, checked before sending). Nested fields also take plain dicts.

    Examples:
        >>> ImageToVideo(image="https://example.test/cat.png", prompt="The cat waves").prompt
        'The cat waves'
    """

    image: str | None = attrs.field(default=None, validator=_fields.image)
    image_tail: str | None = attrs.field(default=None, validator=_fields.image)
    prompt: str | None = attrs.field(default=None, validator=_fields.text)
    negative_prompt: str | None = attrs.field(default=None, validator=_fields.text)
    aspect_ratio: str | None = attrs.field(default=None, validator=_fields.text)
    static_mask: str | None = attrs.field(default=None, validator=_fields.image)
    dynamic_masks: tuple[DynamicMask, ...] | None = attrs.field(
        default=None, converter=_dynamic_masks
    )
    camera_control: CameraControl | None = attrs.field(default=None, converter=_camera_control)
    voice_list: tuple[Voice, ...] | None = attrs.field(default=None, converter=_voice_list)
    element_list: tuple[Element, ...] | None = attrs.field(default=None, converter=_element_list)

    def __attrs_post_init__(self) -> None:
        if self.image is None and self.image_tail is None:
            raise _fail("image", "is required (or image_tail)")


# The other kinds' requests live in .requests, which imports this module; the alias names them
# for type checkers only (at run time nothing needs it: annotations are not evaluated).
TaskRequest: TypeAlias = (
    "TextToVideo | ImageToVideo | MultiImageToVideo | VideoEffects | OmniVideo"
    " | AvatarImageToVideo | ImageGeneration | VirtualTryOn | TextToAudio | VideoToAudio"
    " | VideoExtend | ImageExpand | OmniImage | MultiImageToImage | AdvancedLipSync"
    " | MotionControl | MultiElements"
)
"""Any request that creates a task (every request class of [`kling_async.KINDS`][kling_async.kinds.KINDS])."""
