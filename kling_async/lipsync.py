"""Lip-sync as one call: find the face, then sync it to the sound.

Kling's current lip-sync is two requests: ``POST videos/identify-face`` (synchronous; answers a
``session_id``, valid 24 hours, and the faces it found) and ``POST videos/advanced-lip-sync`` (a
task naming the session, a face and the sound). [`lip_sync`][kling_async.lipsync.lip_sync] does both, so a session id never
has to be carried around, and the face and timing are checked before either request.

Examples:
    >>> LipSync(video_id="v1", audio_id="a1", sound_end_time=3000).face_index
    0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from . import _fields
from .errors import InvalidRequestError, ResponseParseError

if TYPE_CHECKING:
    from .client import KlingClient
    from .models import Task

__all__ = ["AdvancedLipSync", "FaceChoice", "LipSync", "lip_sync"]

_MIN_CLIP_MS = 2000  # "the clipped audio segment is at least 2000 ms"
_VOLUME = _fields.number_in(0, 2)
IDENTIFY_FACE_PATH = "videos/identify-face"


def _milliseconds(value: int) -> int:
    return _fields.whole_number("sound time", value, what="milliseconds as a whole number")


def _optional_ms(value: int | None) -> int | None:
    return None if value is None else _milliseconds(value)


def _one_of(request: object, *names: str) -> None:
    given = [name for name in names if getattr(request, name) is not None]
    if len(given) != 1:
        raise _fields.fail("/".join(names), f"exactly one of {', '.join(names)} is required")


def _check_clip(start: int, end: int | None) -> None:
    if end is None:
        raise _fields.fail("sound_end_time", "is required (milliseconds into the sound)")
    if end - start < _MIN_CLIP_MS:
        raise _fields.fail(
            "sound_end_time",
            f"the clip from {start} ms to {end} ms is shorter than {_MIN_CLIP_MS} ms",
        )


@attrs.frozen(kw_only=True)
class FaceChoice:
    """One face to sync (``face_choose[]``): which face, which sound, which part of it, where."""

    face_id: str | None = attrs.field(default=None, validator=_fields.text)
    audio_id: str | None = attrs.field(default=None, validator=_fields.text)
    sound_file: str | None = attrs.field(default=None, validator=_fields.text)
    sound_start_time: int = attrs.field(default=0, converter=_milliseconds)
    sound_end_time: int | None = attrs.field(default=None, converter=_optional_ms)
    sound_insert_time: int = attrs.field(default=0, converter=_milliseconds)
    sound_volume: float | None = attrs.field(default=None, validator=_VOLUME)
    original_audio_volume: float | None = attrs.field(default=None, validator=_VOLUME)

    def __attrs_post_init__(self) -> None:
        if not self.face_id:
            raise _fields.fail("face_id", "is required")
        _one_of(self, "audio_id", "sound_file")
        _check_clip(self.sound_start_time, self.sound_end_time)


def _faces(value: Iterable[FaceChoice | Mapping[str, Any]] | None) -> tuple[FaceChoice, ...]:
    if value is None:
        raise _fields.fail("face_choose", "is required: at least one face")
    faces = _fields.nested_tuple(FaceChoice, "face_choose", value)
    if not faces:
        raise _fields.fail("face_choose", "is required: at least one face")
    return faces


def _required_text(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _fields.fail(attribute.name, f"is required text, got {_fields.describe(value)}")


@attrs.frozen(kw_only=True)
class AdvancedLipSync:
    """The second step (``videos/advanced-lip-sync``); [`lip_sync`][kling_async.lipsync.lip_sync] builds it for you."""

    session_id: str | None = attrs.field(default=None, validator=_required_text)
    face_choose: tuple[FaceChoice, ...] | None = attrs.field(default=None, converter=_faces)
    callback_url: str | None = attrs.field(
        default=None, validator=_fields.callback, repr=_fields.callback_repr
    )
    external_task_id: str | None = attrs.field(default=None, validator=_fields.text)
    relax_rules: frozenset[str] = attrs.field(factory=frozenset, converter=_fields.rule_names)


def _face_index(value: int) -> int:
    return _fields.whole_number("face_index", value)


@attrs.frozen(kw_only=True)
class LipSync:
    """What to lip-sync: a video (Kling ``video_id`` or ``video_url``), a sound (``audio_id`` or
    ``sound_file``), the part of the sound to use (milliseconds, at least 2 s) and which of the
    faces found to animate (``face_index``, in the order the server lists them)."""

    video_id: str | None = attrs.field(default=None, validator=_fields.text)
    video_url: str | None = attrs.field(default=None, validator=_fields.text)
    audio_id: str | None = attrs.field(default=None, validator=_fields.text)
    sound_file: str | None = attrs.field(default=None, validator=_fields.text)
    sound_start_time: int = attrs.field(default=0, converter=_milliseconds)
    sound_end_time: int | None = attrs.field(default=None, converter=_optional_ms)
    sound_insert_time: int = attrs.field(default=0, converter=_milliseconds)
    sound_volume: float | None = attrs.field(default=None, validator=_VOLUME)
    original_audio_volume: float | None = attrs.field(default=None, validator=_VOLUME)
    face_index: int = attrs.field(default=0, converter=_face_index)
    callback_url: str | None = attrs.field(
        default=None, validator=_fields.callback, repr=_fields.callback_repr
    )
    external_task_id: str | None = attrs.field(default=None, validator=_fields.text)

    def __attrs_post_init__(self) -> None:
        _one_of(self, "video_id", "video_url")
        _one_of(self, "audio_id", "sound_file")
        _check_clip(self.sound_start_time, self.sound_end_time)


def _face_ids(data: Any) -> tuple[str, list[str]]:
    if not isinstance(data, Mapping):
        raise ResponseParseError("identify-face answered no object", where=IDENTIFY_FACE_PATH)
    session = data.get("session_id")
    faces = data.get("face_data")
    if not isinstance(session, str) or not session or not isinstance(faces, list):
        raise ResponseParseError(
            "identify-face answered no session_id or face_data", where=IDENTIFY_FACE_PATH
        )
    ids = [
        str(face["face_id"])
        for face in faces
        if isinstance(face, Mapping) and face.get("face_id") not in (None, "")
    ]
    return session, ids


async def lip_sync(client: KlingClient, request: LipSync) -> Task:
    """Identify the faces in the video, then create the lip-sync task for the chosen one.

    Returns:
        The lip-sync task (kind ``advanced-lip-sync``), to [`wait`][kling_async.client.KlingClient.wait] for.

    Raises:
        InvalidRequestError: no face was found, or fewer than ``face_index + 1``.
        ResponseParseError: identify-face answered something unreadable.
        APIError: either request failed.
    """
    video = (
        {"video_id": request.video_id}
        if request.video_id is not None
        else {"video_url": request.video_url}
    )
    data = await client._call("POST", IDENTIFY_FACE_PATH, json=video)
    session, faces = _face_ids(data)
    if request.face_index >= len(faces):
        raise InvalidRequestError(
            f"face_index: the video has {len(faces)} face(s) the server can sync; "
            f"index {request.face_index} is out of range"
        )
    choice = FaceChoice(face_id=faces[request.face_index], **_fields.carried(request, FaceChoice))
    return await client.submit(
        AdvancedLipSync(
            session_id=session,
            face_choose=(choice,),
            callback_url=request.callback_url,
            external_task_id=request.external_task_id,
        )
    )
