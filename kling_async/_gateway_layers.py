"""The gateway-layer walk: a task's fields read out of the records it is wrapped in.

A gateway's record of a task (new-api's ``TaskDto``: its own id, status, progress and
``result_url``) may hold the upstream's answer in ``data``, as the bare task or as the whole
upstream envelope, possibly wrapped again. [`parse_task`][kling_async.wire.parse_task] reads
Kling's own running task directly and comes here for everything else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from . import dialects
from ._envelope import error_from
from .errors import ResponseParseError
from .models import TaskKind, TaskStatus

__all__ = ["GATEWAY_KEYS", "MAX_NESTING", "first", "normalise_task", "progress_percent", "shape"]

MAX_NESTING = 8
"""How many gateway records and upstream envelopes a task may be wrapped in before the answer is
refused as malformed. JSON nested deeper than the interpreter's recursion limit (about 1,000
levels) is refused while decoding."""


def first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def _layers(data: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
    """The records a task is wrapped in, outermost first, envelopes stepped through.

    A gateway's record of a task (new-api's ``TaskDto``: its own id, status, progress and
    ``result_url``) may hold the upstream's answer in ``data``: the bare task, or the whole
    upstream envelope ``{code, message, request_id, data: {<task>}}``, possibly again wrapped.
    Each envelope's ``code`` is checked on the way in.
    """
    layers = [data]
    current = data
    for _ in range(MAX_NESTING):
        inner = current.get("data")
        if isinstance(inner, Mapping) and dialects.is_envelope(inner):
            error = error_from(inner, 200, {})
            if error is not None:
                if TaskStatus.parse(str(first(current, "task_status", "status") or "")) in (
                    TaskStatus.FAILED,
                    TaskStatus.SUCCEED,
                ):
                    # The gateway has settled the task; the upstream's error explains it.
                    layers.append({"task_status_msg": error.message})
                    return layers
                raise error
            inner = inner.get("data")
        if not isinstance(inner, Mapping):
            return layers
        layers.append(inner)
        current = inner
    raise ResponseParseError(
        f"the task is wrapped more than {MAX_NESTING} levels deep", where=where
    )


def _layered(layers: list[Mapping[str, Any]], *keys: str) -> Any:
    """The innermost non-empty value of *keys* (the upstream's word beats a gateway's copy)."""
    for layer in reversed(layers):
        get = layer.get
        for key in keys:  # _first, inlined: this runs about ten times per status answer
            value = get(key)
            if value is not None:
                if value != "":
                    return value
                break  # an empty value in this layer: the next layer out may know
    return None


def _status(layers: list[Mapping[str, Any]]) -> Any:
    innermost = _layered(layers, "task_status", "status")
    if innermost is None or TaskStatus.parse(str(innermost)).is_finished:
        return innermost
    # A gateway that settled the task (a timeout, a refund) will not ask the upstream again.
    for layer in layers:
        outer = first(layer, "task_status", "status")
        if outer is not None and TaskStatus.parse(str(outer)).is_finished:
            return outer
    return innermost


def _results(layers: list[Mapping[str, Any]], where: str, *, fallback: bool) -> list[Any]:
    for layer in reversed(layers):
        result = layer.get("task_result")
        if isinstance(result, Mapping) and result.get("videos") is not None:
            videos = result["videos"]
            if not isinstance(videos, list) or not all(isinstance(v, Mapping) for v in videos):
                raise ResponseParseError(
                    f"task_result.videos must be a list of objects, got {shape(videos)}",
                    where=where,
                )
            return videos
        outputs = layer.get("outputs")
        if outputs is not None:
            if not isinstance(outputs, list) or not all(isinstance(v, Mapping) for v in outputs):
                raise ResponseParseError(
                    f"outputs must be a list of objects, got {shape(outputs)}", where=where
                )
            return [item for item in outputs if item.get("type", "video") == "video"]
    # A gateway's lone result URL stands for the video; image and audio tasks list theirs.
    url = _layered(layers, *dialects.RESULT_URL_KEYS) if fallback else None
    return [{"url": url}] if isinstance(url, str) and url else []


def shape(value: Any) -> str:
    if isinstance(value, list):
        kinds = sorted({type(item).__name__ for item in value})
        return f"a list of {', '.join(kinds)}" if kinds else "an empty list"
    return type(value).__name__


def progress_percent(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(str(value).strip().rstrip("%"))
    except ValueError:
        return None
    return max(0, min(100, int(number))) if math.isfinite(number) else None  # NaN, inf: none


GATEWAY_KEYS = frozenset(
    {
        "data",
        "id",
        "status",
        "fail_reason",
        "message",
        "external_id",
        "create_time",
        "submit_time",
        "update_time",
        "progress",
        "outputs",
        "error",
        *dialects.RESULT_URL_KEYS,
    }
)
"""Every key the walk reads that Kling's legacy task object does not have: an answer holding
none of them is that object as it is, with nothing to weigh against another layer, and
``wire`` reads it directly. A key the walk learns must be added here."""


def _error_message(layers: list[Mapping[str, Any]]) -> str | None:
    """A gateway's ``error: {code, message}`` beside the task (crazyrouter, kling-api.md §2.4)."""
    for layer in reversed(layers):
        error = layer.get("error")
        if isinstance(error, Mapping):
            message = first(error, "message", "code")
            if message is not None and message != "":
                return str(message)
    return None


def normalise_task(data: Mapping[str, Any], kind: TaskKind, where: str) -> dict[str, Any]:
    layers = _layers(data, where)
    outer_id = _layered(layers[:1], "task_id", "id")
    inner_id = _layered(layers[-1:], "task_id", "id")
    info = _layered(layers, "task_info")
    info = info if isinstance(info, Mapping) else {}
    return {
        # The outermost id is the one to query with: a gateway's own id, not the upstream's.
        "task_id": outer_id if outer_id is not None else _layered(layers, "task_id", "id"),
        "upstream_id": inner_id if inner_id is not None and inner_id != outer_id else None,
        "task_status": _status(layers),
        "task_status_msg": _layered(layers, "task_status_msg", "fail_reason", "message")
        or _error_message(layers),
        "external_task_id": first(info, "external_task_id")
        or _layered(layers, "external_task_id", "external_id"),
        "created_at": _layered(layers, "created_at", "create_time", "submit_time"),
        "updated_at": _layered(layers, "updated_at", "update_time"),
        "progress": _layered(layers, "progress"),
        "videos": _results(layers, where, fallback=kind.results == "videos"),
    }
