"""The table of task kinds: which request type creates which kind of task at which path.

A task must be queried at the path of the endpoint that created it, so every [`Task`][kling_async.models.Task] carries
its [`TaskKind`][kling_async.models.TaskKind]. Supporting a new endpoint is one entry here plus its request class.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from . import requests
from .errors import ConfigurationError, ValidationError
from .lipsync import AdvancedLipSync
from .models import ImageToVideo, TaskKind, TextToVideo
from .multielements import MultiElements

__all__ = [
    "IMAGE_TO_VIDEO",
    "KINDS",
    "TEXT_TO_VIDEO",
    "build_request",
    "kind_for_request",
    "kind_named",
    "request_problems",
]

TEXT_TO_VIDEO = TaskKind(
    name="text2video", path="videos/text2video", request_type=TextToVideo, uses_video_model=True
)
"""Text to video: a [`TextToVideo`][kling_async.models.TextToVideo] request."""
IMAGE_TO_VIDEO = TaskKind(
    name="image2video", path="videos/image2video", request_type=ImageToVideo, uses_video_model=True
)
"""Image to video: an [`ImageToVideo`][kling_async.models.ImageToVideo] request."""

_OTHERS = (
    TaskKind("multi-image2video", "videos/multi-image2video", requests.MultiImageToVideo),
    TaskKind("effects", "videos/effects", requests.VideoEffects),
    TaskKind("omni-video", "videos/omni-video", requests.OmniVideo),
    TaskKind("avatar", "videos/avatar/image2video", requests.AvatarImageToVideo),
    TaskKind("advanced-lip-sync", "videos/advanced-lip-sync", AdvancedLipSync),
    TaskKind("lip-sync", "videos/lip-sync", requests.LegacyLipSync),
    TaskKind("multi-elements", "videos/multi-elements", MultiElements),
    TaskKind("image-generation", "images/generations", requests.ImageGeneration, "images"),
    TaskKind("virtual-try-on", "images/kolors-virtual-try-on", requests.VirtualTryOn, "images"),
    TaskKind("text-to-audio", "audio/text-to-audio", requests.TextToAudio, "audios"),
    TaskKind("video-to-audio", "audio/video-to-audio", requests.VideoToAudio, "audios"),
    # Documented by Kling only; through CometAPI they may not exist (docs/unconfirmed.md).
    TaskKind("video-extend", "videos/video-extend", requests.VideoExtend, kling_only=True),
    TaskKind("motion-control", "videos/motion-control", requests.MotionControl, kling_only=True),
    TaskKind("image-expand", "images/editing/expand", requests.ImageExpand, "images", True),
    TaskKind("omni-image", "images/omni-image", requests.OmniImage, "images", True),
    TaskKind(
        "multi-image2image", "images/multi-image2image", requests.MultiImageToImage, "images", True
    ),
)

KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (TEXT_TO_VIDEO, IMAGE_TO_VIDEO, *_OTHERS)}
"""Every known kind by name."""


def kind_named(name: str) -> TaskKind:
    """Return the kind called *name* (``"text2video"``), or raise [`ConfigurationError`][kling_async.errors.ConfigurationError]."""
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise ConfigurationError(f"unknown task kind {name!r}; known kinds: {known}") from None


def kind_for_request(request: object) -> TaskKind:
    """Return the kind a request creates."""
    for kind in KINDS.values():
        if type(request) is kind.request_type:
            return kind
    raise ConfigurationError(f"no task kind creates {type(request).__name__}")


def _field_names(request_type: type[Any]) -> list[str]:
    return [item.name for item in attrs.fields(request_type)]


def build_request(kind: str, fields: Mapping[str, Any]) -> Any:
    """Build the request for *kind* from plain data (a JSON object, a CSV row's cells).

    Nested fields may be dicts and lists, as in JSON. Raises
    [`ValidationError`][kling_async.errors.ValidationError] for the first problem; [`request_problems`][kling_async.kinds.request_problems] lists
    them all.

    Examples:
        >>> build_request("text2video", {"prompt": "a cat", "duration": "05"}).duration
        '5'
    """
    request, problems = request_problems(kind, fields)
    if problems:
        raise problems[0]
    return request


_ROOT = re.compile(r"[^.\[]*")


def request_problems(
    kind: str, fields: Mapping[str, Any]
) -> tuple[Any | None, list[ValidationError]]:
    """``(request, [])`` when *fields* make a valid *kind* request, else ``(None, problems)``.

    Every field with a problem is reported, not only the first: a field found wrong is left out
    and the request built again, once per field at most.

    Raises:
        ConfigurationError: *kind* is not a known kind.
    """
    request_type = kind_named(kind).request_type
    names = _field_names(request_type)
    problems: list[ValidationError] = []
    unknown = sorted(str(name) for name in fields if name not in names)
    if unknown:
        problems.append(
            ValidationError(
                ", ".join(unknown), f"unknown field(s) for {kind}; accepted: {', '.join(names)}"
            )
        )
    remaining = {name: value for name, value in fields.items() if name in names}
    dropped: set[str] = set()
    while True:
        try:
            request = request_type(**remaining)
        except ValidationError as exc:
            root = _ROOT.match(exc.field)
            name = root.group(0) if root else exc.field
            if name in dropped:
                break  # a consequence of a field already reported (a required one left out)
            problems.append(exc)
            if name not in remaining:
                break
            del remaining[name]
            dropped.add(name)
            continue
        return (None, problems) if problems else (request, problems)
    return None, problems
