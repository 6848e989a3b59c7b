"""The table of task kinds: which request type creates which kind of task at which path.

A task must be queried at the path of the endpoint that created it, so every :class:`Task` carries
its :class:`TaskKind`. Supporting a new endpoint is one entry here plus its request class.
"""

from __future__ import annotations

from .errors import ConfigurationError
from .models import ImageToVideo, TaskKind, TextToVideo

__all__ = ["IMAGE_TO_VIDEO", "KINDS", "TEXT_TO_VIDEO", "kind_for_request", "kind_named"]

TEXT_TO_VIDEO = TaskKind(name="text2video", path="videos/text2video", request_type=TextToVideo)
IMAGE_TO_VIDEO = TaskKind(name="image2video", path="videos/image2video", request_type=ImageToVideo)

KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (TEXT_TO_VIDEO, IMAGE_TO_VIDEO)}
"""Every known kind by name."""


def kind_named(name: str) -> TaskKind:
    """Return the kind called *name* (``"text2video"``), or raise :class:`ConfigurationError`."""
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
