"""Image and audio results, read from a task's answer.

Video tasks list ``task_result.videos``; image tasks ``task_result.images[{index, url,
watermark_url}]``; audio tasks ``task_result.audios[{id, url_mp3, url_wav, duration_mp3,
duration_wav}]`` (kling-api.md §1.6). New-standard answers put all of them in ``outputs[]`` with a
``type``. Gateways may wrap the upstream task in ``data`` (once or more), so the task object is
looked for a few levels down. Entries that are not objects, or have no http(s) URL, are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ._urls import http_url

__all__ = ["Audio", "Image", "audios_in", "images_in"]

_MAX_DEPTH = 4  # gateway wrappers seen so far nest the upstream task at most twice


@attrs.frozen
class Image:
    """One generated image.

    Attributes:
        id: the image's position as text (images have no id of their own).
        url: where to download it.
        watermark_url: the watermarked variant, when the server gives one.
    """

    suffix: ClassVar[str] = ".png"
    id: str
    url: str
    watermark_url: str | None = None


@attrs.frozen
class Audio:
    """One generated sound track.

    Attributes:
        id: the audio id.
        url: the MP3 (or, without one, the WAV) to download.
        url_wav: the WAV variant, when the server gives one.
        duration: length in seconds.
    """

    suffix: ClassVar[str] = ".mp3"
    id: str
    url: str
    url_wav: str | None = None
    duration: float | None = None

    @property
    def watermark_url(self) -> None:
        """Audio has no watermarked variant (so downloads treat every result alike)."""
        return None


def _task_object(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    # Not _gateway_layers' walk: that one checks each envelope's code and raises, on the way
    # in; this one runs from Task properties over an answer already accepted, and must never
    # raise.
    current: Any = raw
    for _ in range(_MAX_DEPTH):
        if not isinstance(current, Mapping):
            break
        if isinstance(current.get("task_result"), Mapping) or isinstance(
            current.get("outputs"), list
        ):
            return current
        current = current.get("data")
    return {}


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value) if isinstance(value, int | float | str) and value != "" else None
    except ValueError:
        return None


def _entries(raw: Mapping[str, Any], key: str, output_type: str) -> list[Mapping[str, Any]]:
    task = _task_object(raw)
    result = task.get("task_result")
    listed = result.get(key) if isinstance(result, Mapping) else None
    if not isinstance(listed, list):
        outputs = task.get("outputs")
        listed = [
            item
            for item in (outputs if isinstance(outputs, list) else [])
            if isinstance(item, Mapping) and item.get("type") == output_type
        ]
    return [item for item in listed if isinstance(item, Mapping)]


def images_in(raw: Mapping[str, Any]) -> tuple[Image, ...]:
    """The images of a task answer (empty for other kinds)."""
    images: list[Image] = []
    for position, item in enumerate(_entries(raw, "images", "image")):
        url = http_url(item.get("url"))
        if url is None:
            continue
        index = item.get("index", item.get("id", position))
        images.append(
            Image(id=str(index), url=url, watermark_url=http_url(item.get("watermark_url")))
        )
    return tuple(images)


def audios_in(raw: Mapping[str, Any]) -> tuple[Audio, ...]:
    """The sound tracks of a task answer (empty for other kinds)."""
    audios: list[Audio] = []
    for position, item in enumerate(_entries(raw, "audios", "audio")):
        wav = http_url(item.get("url_wav"))
        url = http_url(item.get("url_mp3")) or http_url(item.get("url")) or wav
        if url is None:
            continue
        duration = _seconds(item.get("duration_mp3", item.get("duration")))
        audios.append(
            Audio(id=str(item.get("id", position)), url=url, url_wav=wav, duration=duration)
        )
    return tuple(audios)
