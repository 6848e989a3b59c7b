"""The emulator's table of task kinds and its validation of create bodies.

This deliberately re-implements the rules of kling-api.md §1.4 and §3 instead of importing the
client's validation, so that each can catch the other's mistakes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._config import Validation

__all__ = [
    "DEFAULT_KINDS",
    "IMAGE2VIDEO",
    "TEXT2VIDEO",
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
    """Raise :class:`InvalidParameterError` for a bad body."""


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


TEXT2VIDEO = KindSpec("text2video", "videos/text2video", "TEXT2VIDEO", validate_text2video)
"""Text to video."""
IMAGE2VIDEO = KindSpec("image2video", "videos/image2video", "IMAGE2VIDEO", validate_image2video)
"""Image to video."""
DEFAULT_KINDS: tuple[KindSpec, ...] = (TEXT2VIDEO, IMAGE2VIDEO)
"""Kinds served by default; pass e.g. ``(*DEFAULT_KINDS, KindSpec("omni-video",
"videos/omni-video", "OMNI_VIDEO", validate_lenient))`` to serve more."""
