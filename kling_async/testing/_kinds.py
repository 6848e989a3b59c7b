"""The emulator's table of task kinds and its validation of create bodies.

This deliberately re-implements the rules of kling-api.md §1.4 and §3 instead of importing the
client's validation, so that each can catch the other's mistakes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._config import Validation

__all__ = [
    "DEFAULT_KINDS",
    "IMAGE2VIDEO",
    "TEXT2VIDEO",
    "OTHER_KINDS",
    "SYNCHRONOUS",
    "InvalidParameterError",
    "KindSpec",
    "validate_image2video",
    "validate_lenient",
    "validate_text2video",
]

Body = Mapping[str, Any]

CAMERA_TYPES = ("simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward")
CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")


class InvalidParameterError(Exception):
    """A create body broke a rule; the message names the field (answered as 400/1201)."""


@attrs.frozen
class KindSpec:
    """One task kind: where it lives and how its create body is checked."""

    name: str
    """Short name, e.g. ``"text2video"``."""
    path: str
    """Path below the API prefix, e.g. ``"videos/text2video"``."""
    action: str
    """Gateway action name used by ``wrap_queries`` (e.g. ``"TEXT2VIDEO"``)."""
    validate: Callable[[Body, Validation], None]
    """Raise [`InvalidParameterError`][kling_async.testing.InvalidParameterError] for a bad body."""
    results: str = "videos"
    """What a success lists in ``task_result``: ``"videos"``, ``"images"`` or ``"audios"``."""


def _present(body: Body, field: str) -> bool:
    # Kling's Java back end treats JSON null like an absent field.
    return body.get(field) is not None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_string(
    body: Body, field: str, *, required: bool = False, max_len: int | None = None
) -> None:
    if not _present(body, field):
        if required:
            raise InvalidParameterError(f"{field}: must not be null")
        return
    value = body[field]
    if not isinstance(value, str):
        raise InvalidParameterError(f"{field}: must be a string")
    if required and not value.strip():
        raise InvalidParameterError(f"{field}: must not be blank")
    if max_len is not None and len(value) > max_len:
        raise InvalidParameterError(f"{field}: length must be between 0 and {max_len}")


def _check_enum(body: Body, field: str, allowed: tuple[str, ...]) -> None:
    if not _present(body, field):
        return
    value = body[field]
    if not isinstance(value, str) or value not in allowed:
        raise InvalidParameterError(f"{field}: allowed values: {', '.join(allowed)}")


def _check_duration(body: Body, rules: Validation) -> None:
    if not _present(body, "duration"):
        return
    value = body["duration"]
    if not isinstance(value, str):
        # The live API wants the string form; a bare number is a common client bug.
        raise InvalidParameterError(
            f"duration: must be a string, allowed values: {', '.join(rules.durations)}"
        )
    if value not in rules.durations:
        raise InvalidParameterError(f"duration: allowed values: {', '.join(rules.durations)}")


def _check_cfg_scale(body: Body) -> None:
    if not _present(body, "cfg_scale"):
        return
    value = body["cfg_scale"]
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise InvalidParameterError("cfg_scale: must be a number between 0 and 1")


def _check_camera_control(body: Body) -> None:
    if not _present(body, "camera_control"):
        return
    control = body["camera_control"]
    if not isinstance(control, dict):
        raise InvalidParameterError("camera_control: must be an object")
    kind = control.get("type")
    if kind not in CAMERA_TYPES:
        raise InvalidParameterError(
            f"camera_control.type: allowed values: {', '.join(CAMERA_TYPES)}"
        )
    config = control.get("config")
    if kind != "simple":
        if config is not None:
            raise InvalidParameterError(f"camera_control.config: must be empty for type {kind}")
        return
    if not isinstance(config, dict):
        raise InvalidParameterError("camera_control.config: required for type simple")
    unknown = sorted(set(config) - set(CAMERA_AXES))
    if unknown:
        raise InvalidParameterError(f"camera_control.config: unknown field {unknown[0]}")
    nonzero = 0
    for axis in CAMERA_AXES:
        value = config.get(axis, 0)
        if value is None:
            value = 0
        if not _is_number(value) or not -10 <= value <= 10:
            raise InvalidParameterError(
                f"camera_control.config.{axis}: must be a number between -10 and 10"
            )
        if value != 0:
            nonzero += 1
    if nonzero != 1:
        raise InvalidParameterError("camera_control.config: exactly one parameter must be non-zero")


def _check_image(body: Body, field: str, *, required: bool) -> None:
    _check_string(body, field, required=required)
    value = body.get(field)
    if isinstance(value, str) and value.lstrip().lower().startswith("data:"):
        raise InvalidParameterError(f"{field}: base64 must not include a data: prefix")


def _check_common(body: Body, rules: Validation) -> None:
    if _present(body, "model_name"):
        model = body["model_name"]
        if not isinstance(model, str) or (
            rules.model_names is not None and model not in rules.model_names
        ):
            raise InvalidParameterError("model_name: unsupported model")
    _check_string(body, "negative_prompt", max_len=rules.negative_prompt_max)
    _check_enum(body, "mode", rules.modes)
    _check_duration(body, rules)
    _check_cfg_scale(body)
    _check_camera_control(body)
    _check_enum(body, "sound", ("on", "off"))
    _check_string(body, "callback_url")
    _check_string(body, "external_task_id")
    if _present(body, "watermark_info") and not isinstance(body["watermark_info"], dict):
        raise InvalidParameterError("watermark_info: must be an object")


def validate_text2video(body: Body, rules: Validation) -> None:
    """Check a text2video create body (kling-api.md §1.4); unknown fields are ignored."""
    _check_string(body, "prompt", required=True, max_len=rules.prompt_max)
    _check_common(body, rules)
    _check_enum(body, "aspect_ratio", rules.aspect_ratios + rules.extra_aspect_ratios)


def validate_image2video(body: Body, rules: Validation) -> None:
    """Check an image2video create body; ``image`` is required and must not be a data URL."""
    _check_image(body, "image", required=True)
    _check_image(body, "image_tail", required=False)
    _check_string(body, "prompt", max_len=rules.prompt_max)
    _check_common(body, rules)
    exclusive = [f for f in ("image_tail", "camera_control", "dynamic_masks") if _present(body, f)]
    if _present(body, "static_mask") and "dynamic_masks" not in exclusive:
        exclusive.append("static_mask")
    if len(exclusive) > 1:
        raise InvalidParameterError(f"{exclusive[0]}: cannot be combined with {exclusive[1]}")


def validate_lenient(body: Body, rules: Validation) -> None:
    """Check only the fields every create shares; for kinds the emulator does not model closely."""
    _check_string(body, "prompt", max_len=rules.prompt_max)
    _check_common(body, rules)


def _check_models(body: Body, models: tuple[str, ...]) -> None:
    model = body.get("model_name")
    if model is not None and model not in models:
        raise InvalidParameterError(
            f"model_name: {model} is not supported by this API, supported: {', '.join(models)}"
        )


def _check_list(body: Body, field: str, *, required: bool, max_items: int) -> None:
    if not _present(body, field):
        if required:
            raise InvalidParameterError(f"{field}: must not be empty")
        return
    value = body[field]
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidParameterError(f"{field}: must be an array of objects")
    if not value and required:
        raise InvalidParameterError(f"{field}: must not be empty")
    if len(value) > max_items:
        raise InvalidParameterError(f"{field}: size must be between 1 and {max_items}")


def _check_count(body: Body) -> None:
    if _present(body, "n"):
        value = body["n"]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 9:
            raise InvalidParameterError("n: must be between 1 and 9")


def _check_callback_fields(body: Body, rules: Validation) -> None:
    _check_string(body, "callback_url")
    _check_string(body, "external_task_id")
    _check_enum(body, "mode", rules.modes)
    if _present(body, "watermark_info") and not isinstance(body["watermark_info"], dict):
        raise InvalidParameterError("watermark_info: must be an object")


def _exactly_one(body: Body, *fields: str) -> None:
    if sum(_present(body, field) for field in fields) != 1:
        raise InvalidParameterError(f"{'/'.join(fields)}: exactly one must be provided")


def validate_multi_image2video(body: Body, rules: Validation) -> None:
    """multi-image2video: kling-v1-6 only, 1-4 images, a prompt (kling-api.md §1.4)."""
    _check_models(body, ("kling-v1-6",))
    _check_list(body, "image_list", required=True, max_items=4)
    _check_string(body, "prompt", required=True, max_len=rules.prompt_max)
    _check_duration(body, rules)
    _check_callback_fields(body, rules)


def validate_effects(body: Body, rules: Validation) -> None:
    """effects: a scene name and an input with one image or two."""
    _check_string(body, "effect_scene", required=True)
    effect_input = body.get("input")
    if not isinstance(effect_input, dict):
        raise InvalidParameterError("input: must not be null")
    _exactly_one(effect_input, "image", "images")
    images = effect_input.get("images")
    if images is not None and (not isinstance(images, list) or len(images) != 2):
        raise InvalidParameterError("input.images: must hold 2 images")
    _check_callback_fields(body, rules)


def validate_lip_sync(body: Body, rules: Validation) -> None:
    """lip-sync (old form): an input with a video and a text in a voice, or a sound."""
    sync = body.get("input")
    if not isinstance(sync, dict):
        raise InvalidParameterError("input: must not be null")
    _exactly_one(sync, "video_id", "video_url")
    _check_enum(sync, "mode", ("text2video", "audio2video"))
    if sync.get("mode") == "text2video":
        _check_string(sync, "text", required=True, max_len=120)
        _check_string(sync, "voice_id", required=True)
        _check_enum(sync, "voice_language", ("zh", "en"))
    elif sync.get("mode") == "audio2video":
        _check_enum(sync, "audio_type", ("file", "url"))
        _check_string(
            sync, "audio_url" if sync.get("audio_type") == "url" else "audio_file", required=True
        )
    else:
        raise InvalidParameterError("input.mode: must not be null")
    _check_callback_fields(body, rules)


def validate_omni_video(body: Body, rules: Validation) -> None:
    """omni-video: the omni models only, a prompt, reference lists of objects."""
    _check_models(body, ("kling-video-o1", "kling-v3-omni"))
    _check_string(body, "prompt", required=True, max_len=rules.prompt_max)
    _check_list(body, "image_list", required=False, max_items=7)
    _check_list(body, "video_list", required=False, max_items=1)
    _check_enum(body, "sound", ("on", "off"))
    _check_callback_fields(body, rules)


def validate_image_generation(body: Body, rules: Validation) -> None:
    """images/generations: a prompt, n in [1, 9], fidelities in [0, 1]."""
    _check_string(body, "prompt", required=True, max_len=rules.prompt_max)
    _check_image(body, "image", required=False)
    _check_enum(body, "resolution", ("1k", "2k"))
    _check_count(body)
    for field in ("image_fidelity", "human_fidelity"):
        value = body.get(field)
        if value is not None and (not _is_number(value) or not 0 <= value <= 1):
            raise InvalidParameterError(f"{field}: must be a number between 0 and 1")
    _check_callback_fields(body, rules)


def _requiring(*images: str, text: tuple[str, ...] = (), one_of: tuple[str, ...] = ()) -> Any:
    def validate(body: Body, rules: Validation) -> None:
        for field in images:
            _check_image(body, field, required=True)
        for field in text:
            _check_string(body, field, required=True, max_len=rules.prompt_max)
        if one_of:
            _exactly_one(body, *one_of)
        _check_count(body)
        _check_callback_fields(body, rules)

    return validate


TEXT2VIDEO = KindSpec("text2video", "videos/text2video", "TEXT2VIDEO", validate_text2video)
"""Text to video."""
IMAGE2VIDEO = KindSpec("image2video", "videos/image2video", "IMAGE2VIDEO", validate_image2video)
"""Image to video."""


def validate_motion_control(body: Body, rules: Validation) -> None:
    """motion-control: an image, a video, whose orientation to follow, a mode."""
    _check_models(body, ("kling-v2-6", "kling-v3"))
    _check_image(body, "image_url", required=True)
    _check_string(body, "video_url", required=True)
    if body.get("character_orientation") not in ("image", "video"):
        raise InvalidParameterError("character_orientation: allowed values: image, video")
    _check_enum(body, "keep_original_sound", ("yes", "no"))
    _check_string(body, "prompt", max_len=rules.prompt_max)
    _check_callback_fields(body, rules)


_SESSION_PREFIX = "session-"
_TOTAL_FRAMES = 150


def identify_face(body: Body) -> dict[str, Any]:
    """The synchronous answer of ``videos/identify-face``: a session and one face.

    Sessions are derived from the video, so the emulator needs no state to check them later.
    """
    _exactly_one(body, "video_id", "video_url")
    video = str(body.get("video_id") or body.get("video_url"))
    session = _SESSION_PREFIX + hashlib.sha256(video.encode()).hexdigest()[:16]
    face = {"face_id": "0", "face_image": "", "start_time": 0, "end_time": 5000}
    return {"session_id": session, "face_data": [face]}


def validate_advanced_lip_sync(body: Body, rules: Validation) -> None:
    """advanced-lip-sync: a session from identify-face, faces it found, clips of at least 2 s."""
    session = body.get("session_id")
    if not isinstance(session, str) or not session.startswith(_SESSION_PREFIX):
        raise InvalidParameterError("session_id: session not found or expired")
    _check_list(body, "face_choose", required=True, max_items=10)
    for face in body["face_choose"]:
        if face.get("face_id") != "0":
            raise InvalidParameterError("face_choose.face_id: face not found in session")
        _exactly_one(face, "audio_id", "sound_file")
        start, end = face.get("sound_start_time", 0), face.get("sound_end_time")
        if not _is_number(start) or not _is_number(end) or end - start < 2000:
            raise InvalidParameterError(
                "face_choose.sound_end_time: the clipped audio segment is at least 2000 ms"
            )
    _check_callback_fields(body, rules)


def _check_session(body: Body) -> None:
    session = body.get("session_id")
    if not isinstance(session, str) or not session.startswith(_SESSION_PREFIX):
        raise InvalidParameterError("session_id: session not found or expired")


def init_selection(body: Body) -> dict[str, Any]:
    """The synchronous answer of multi-elements ``init-selection``: a session on the video."""
    _exactly_one(body, "video_id", "video_url")
    video = str(body.get("video_id") or body.get("video_url"))
    session = _SESSION_PREFIX + hashlib.sha256(video.encode()).hexdigest()[:16]
    return {
        "status": 0,
        "session_id": session,
        "fps": 30.0,
        "original_duration": 5000,
        "width": 1280,
        "height": 720,
        "total_frame": _TOTAL_FRAMES,
        "normalized_video": "",
    }


def add_selection(body: Body) -> dict[str, Any]:
    """``add-selection``: a known session, a frame of the video, 1 to 10 points in [0, 1]."""
    _check_session(body)
    frame = body.get("frame_index")
    if not isinstance(frame, int) or isinstance(frame, bool) or not 0 <= frame < _TOTAL_FRAMES:
        raise InvalidParameterError(f"frame_index: must be between 0 and {_TOTAL_FRAMES - 1}")
    _check_list(body, "points", required=True, max_items=10)
    for point in body["points"]:
        for axis in ("x", "y"):
            value = point.get(axis)
            if not _is_number(value) or not 0 <= value <= 1:
                raise InvalidParameterError(f"points.{axis}: must be between 0 and 1")
    return {"status": 0, "res": {"frame_index": frame, "rle_mask_list": []}}


def validate_multi_elements(body: Body, rules: Validation) -> None:
    """multi-elements: a session, an edit mode, images for addition and swap only."""
    _check_models(body, ("kling-v1-6",))
    _check_session(body)
    _check_enum(body, "edit_mode", ("addition", "swap", "removal"))
    if not _present(body, "edit_mode"):
        raise InvalidParameterError("edit_mode: must not be null")
    _check_string(body, "prompt", required=True, max_len=rules.prompt_max)
    if body["edit_mode"] == "removal":
        if _present(body, "image_list"):
            raise InvalidParameterError("image_list: must be empty for removal")
    else:
        _check_list(body, "image_list", required=True, max_items=4)
    _check_duration(body, rules)
    _check_callback_fields(body, rules)


SYNCHRONOUS: dict[str, dict[str, Callable[[Body], dict[str, Any]]]] = {
    "advanced-lip-sync": {"videos/identify-face": identify_face},
    "multi-elements": {
        "videos/multi-elements/init-selection": init_selection,
        "videos/multi-elements/add-selection": add_selection,
    },
}
"""The synchronous steps served beside a kind, by kind name: path -> answer for a body."""


OTHER_KINDS: tuple[KindSpec, ...] = (
    KindSpec(
        "multi-image2video",
        "videos/multi-image2video",
        "MULTI_IMAGE2VIDEO",
        validate_multi_image2video,
    ),
    KindSpec("effects", "videos/effects", "EFFECTS", validate_effects),
    KindSpec("omni-video", "videos/omni-video", "OMNI_VIDEO", validate_omni_video),
    KindSpec(
        "avatar",
        "videos/avatar/image2video",
        "AVATAR",
        _requiring("image", one_of=("audio_id", "sound_file")),
    ),
    KindSpec(
        "advanced-lip-sync",
        "videos/advanced-lip-sync",
        "ADVANCED_LIP_SYNC",
        validate_advanced_lip_sync,
    ),
    KindSpec("lip-sync", "videos/lip-sync", "LIP_SYNC", validate_lip_sync),
    KindSpec("multi-elements", "videos/multi-elements", "MULTI_ELEMENTS", validate_multi_elements),
    KindSpec(
        "image-generation", "images/generations", "GENERATIONS", validate_image_generation, "images"
    ),
    KindSpec(
        "virtual-try-on",
        "images/kolors-virtual-try-on",
        "KOLORS_VIRTUAL_TRY_ON",
        _requiring("human_image", "cloth_image"),
        "images",
    ),
    KindSpec(
        "text-to-audio",
        "audio/text-to-audio",
        "TEXT_TO_AUDIO",
        _requiring(text=("prompt",)),
        "audios",
    ),
    KindSpec(
        "video-to-audio",
        "audio/video-to-audio",
        "VIDEO_TO_AUDIO",
        _requiring(one_of=("video_id", "video_url")),
        "audios",
    ),
    KindSpec("video-extend", "videos/video-extend", "VIDEO_EXTEND", _requiring(text=("video_id",))),
    KindSpec(
        "motion-control",
        "videos/motion-control",
        "MOTION_CONTROL",
        validate_motion_control,
    ),
    KindSpec("image-expand", "images/editing/expand", "EXPAND", _requiring("image"), "images"),
    KindSpec(
        "omni-image", "images/omni-image", "OMNI_IMAGE", _requiring(text=("prompt",)), "images"
    ),
    KindSpec(
        "multi-image2image",
        "images/multi-image2image",
        "MULTI_IMAGE2IMAGE",
        _requiring(text=("prompt",)),
        "images",
    ),
)
"""Every other kind the client knows, each with its own checks and result type."""
DEFAULT_KINDS: tuple[KindSpec, ...] = (TEXT2VIDEO, IMAGE2VIDEO, *OTHER_KINDS)
"""Kinds served by default: every kind the client knows."""
