"""Kling's new-standard API (2026): the model in the path, one ``/tasks`` query for every task.

Kling documents a second API style beside the legacy ``/v1`` one (kling-api.md §1.3):

* creates go to ``POST /<product>/<model>`` (``/text-to-video/kling-3.0``) with a body of
  ``contents`` (what to generate from), ``settings`` (how) and ``options`` (callback, external id,
  watermark);
* every task is read with ``GET /tasks?task_ids=a,b,...`` (or ``external_task_ids=``), many per
  request, and answered as ``{id, status: "succeeded", outputs: [...]}``;
* only API-key authentication is accepted.

Select it with ``Provider.api_style`` ([`KLING_STANDARD`][kling_async.providers.KLING_STANDARD]).
Requests stay the same classes: this module translates the legacy body the library builds into
the new shape, so validation, journals and batch files do not change. Kinds the new API does not
cover (effects, lip-sync, images, audio, ...) keep their legacy paths on the same provider.

The exact names inside ``contents`` and ``settings``, the path names of models, how many ids one
query takes, and the create answer's shape are not shown in full by Kling's pages; each is a
table or constant here, and ``docs/unconfirmed.md`` lists them.

Examples:
    >>> create_path("text2video", {"model_name": "kling-v3", "prompt": "a cat"})
    'text-to-video/kling-3.0'
    >>> standard_body({"model_name": "kling-v3", "prompt": "a cat", "mode": "pro",
    ...                "duration": "5", "external_task_id": "e1"})
    {'contents': [{'type': 'text', 'text': 'a cat'}], 'settings': {'resolution': '1080p', 'duration': 5}, 'options': {'external_task_id': 'e1'}}
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from .errors import ValidationError

__all__ = [
    "AUDIO",
    "MODEL_PATHS",
    "PRODUCTS",
    "RESOLUTIONS",
    "TASKS_PER_QUERY",
    "ApiStyle",
    "create_path",
    "standard_body",
]


class ApiStyle(str, enum.Enum):
    """Which of Kling's API styles a provider's creates and queries use."""

    LEGACY = "legacy"
    """``POST /v1/videos/text2video`` with ``model_name`` in the body; one GET per task."""
    STANDARD = "standard"
    """``POST /text-to-video/<model>`` where the kind has such a path; ``GET /tasks?task_ids=``."""


PRODUCTS: Mapping[str, str] = {
    "text2video": "text-to-video",
    "image2video": "image-to-video",
    "motion-control": "motion-control",
}
"""The new API's path for each task kind that has one (other kinds stay on legacy paths)."""

MODEL_PATHS: Mapping[str, str] = {
    "kling-v3": "kling-3.0",
    "kling-v3-omni": "kling-3.0-omni",
    "kling-v2-6": "kling-2.6",
    "kling-v2-5-turbo": "kling-2.5-turbo",
}
"""Legacy ``model_name`` -> the model's name in a new-standard path (the updates log of
07/15/2026 lists 3.0, 3.0 Omni, 2.6 and 2.5 Turbo). A name already in path form passes as is."""

RESOLUTIONS: Mapping[str, str] = {"std": "720p", "pro": "1080p", "4k": "4k"}
"""Legacy ``mode`` -> ``settings.resolution``."""

AUDIO: Mapping[str, str] = {"on": "native", "off": "off"}
"""Legacy ``sound`` -> ``settings.audio``."""

TASKS_PER_QUERY = 20
"""Task ids per ``GET /tasks?task_ids=`` (Kling shows no maximum; kept small on purpose)."""

# Legacy body field -> the ``contents`` entry it becomes (its ``type`` and value key).
_CONTENTS: Mapping[str, tuple[str, str]] = {
    "prompt": ("text", "text"),
    "negative_prompt": ("negative_text", "text"),
    "image": ("image", "image"),
    "image_url": ("image", "image"),
    "image_tail": ("image_tail", "image"),
    "video_url": ("video", "video"),
}
# Legacy body fields copied into ``settings`` unchanged (``mode``/``sound``/``duration`` are
# translated on the way).
_SETTINGS = (
    "aspect_ratio",
    "cfg_scale",
    "camera_control",
    "multi_shot",
    "shot_type",
    "multi_prompt",
    "character_orientation",
    "keep_original_sound",
)
_OPTIONS = ("callback_url", "external_task_id", "watermark_info")


def create_path(kind: str, body: Mapping[str, Any]) -> str:
    """The new-standard create path for a legacy *body* of *kind* (``text-to-video/kling-3.0``).

    Raises:
        ValidationError: *kind* has no new-standard path, or the body names no model or one
            the new API does not serve.
    """
    product = PRODUCTS.get(kind)
    if product is None:
        raise ValidationError("kind", f"{kind} has no path on Kling's new-standard API")
    model = body.get("model_name")
    if not isinstance(model, str) or not model:
        raise ValidationError(
            "model_name",
            f"the new-standard API puts the model in the path; name one ({', '.join(MODEL_PATHS)})",
        )
    if model in MODEL_PATHS.values():
        return f"{product}/{model}"
    path_model = MODEL_PATHS.get(model)
    if path_model is None:
        raise ValidationError(
            "model_name",
            f"{model!r} is not served by Kling's new-standard API (it serves "
            f"{', '.join(MODEL_PATHS)}); use the legacy API style for it",
        )
    return f"{product}/{path_model}"


def standard_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The new-standard body (``contents``/``settings``/``options``) for a legacy create *body*.

    Raises:
        ValidationError: a field has no place in the new shape (``static_mask``,
            ``voice_list``, ...): send such requests with the legacy API style.
    """
    contents: list[dict[str, Any]] = []
    settings: dict[str, Any] = {}
    options: dict[str, Any] = {}
    unplaced: list[str] = []
    for name, value in body.items():
        if name == "model_name":
            continue  # in the path
        if name in _CONTENTS:
            kind, key = _CONTENTS[name]
            contents.append({"type": kind, key: value})
        elif name == "mode":
            settings["resolution"] = RESOLUTIONS.get(value, value)
        elif name == "sound":
            settings["audio"] = AUDIO.get(value, value)
        elif name == "duration":
            settings["duration"] = int(value) if str(value).isdigit() else value
        elif name in _SETTINGS:
            settings[name] = value
        elif name in _OPTIONS:
            options[name] = value
        else:
            unplaced.append(name)
    if unplaced:
        raise ValidationError(
            ", ".join(sorted(unplaced)),
            "not part of Kling's new-standard API request; "
            "send this request with the legacy API style",
        )
    shaped: dict[str, Any] = {"contents": contents}
    if settings:
        shaped["settings"] = settings
    if options:
        shaped["options"] = options
    return shaped
