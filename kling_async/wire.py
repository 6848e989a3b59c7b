"""The wire format: request bodies out, envelopes and task objects in.

Parsing is tolerant of every shape the API notes describe, because gateways differ:

* the Kling envelope ``{"code": 0, "message": ..., "request_id": ..., "data": {...}}`` with
  ``code`` as ``0``, ``"0"`` or ``"success"``;
* CometAPI's own errors ``{"error": {"code": ..., "message": "... (request id: X)", ...}}``;
* the gateway-wrapped task ``{"task_id", "status": "SUCCESS", "fail_reason", "data": {<task>}}``;
* the legacy task (``task_id``/``task_status``/``task_result.videos``) and the new-standard task
  (``id``/``status``/``outputs``);
* timestamps in milliseconds or seconds, statuses in any case and spelling.

Anything that still cannot be read raises :class:`~kling_async.ResponseParseError` naming what was
wrong; a ``KeyError`` or ``TypeError`` never escapes. One :class:`cattrs.Converter`, built here,
does the structuring; the global converter is never touched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import attrs
import cattrs
from cattrs.errors import BaseValidationError

from .errors import APIError, ResponseParseError, error_for_response
from .models import Task, TaskKind, TaskRequest, TaskStatus, Video
from .retry import parse_retry_after

__all__ = ["converter", "parse_envelope", "parse_task", "parse_task_list", "request_body"]

converter = cattrs.Converter(forbid_extra_keys=False)
"""The library's one converter (never :data:`cattrs.global_converter`)."""

_SUCCESS_CODES = {"0", "success", "succeed", "ok"}
_REQUEST_ID_IN_MESSAGE = re.compile(r"\(request id: ([^)]+)\)")
_MS_THRESHOLD = 100_000_000_000  # later than 5138 AD in seconds, earlier than 1973 in ms


def _timestamp(value: Any, _: type) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TypeError("a timestamp cannot be a boolean")
    number = float(value)
    if number >= _MS_THRESHOLD:
        number /= 1000.0
    return datetime.fromtimestamp(number, tz=timezone.utc)


def _duration(value: Any, _: type) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


@attrs.frozen
class _WireVideo:
    id: str = ""
    url: str = ""
    watermark_url: str | None = None
    duration: float | None = None


@attrs.frozen
class _WireTask:
    """The canonical shape every task payload is normalised into before structuring."""

    task_id: str
    task_status: str
    task_status_msg: str | None = None
    external_task_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    videos: list[_WireVideo] = attrs.Factory(list)


def _optional_text(value: Any, _: type) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected text, got {type(value).__name__}")


def _text(value: Any, _: type) -> str:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected text, got {type(value).__name__}")


converter.register_structure_hook(datetime | None, _timestamp)
converter.register_structure_hook(float | None, _duration)
converter.register_structure_hook(str | None, _optional_text)
converter.register_structure_hook(str, _text)


def _excerpt(body: bytes) -> str:
    return body[:120].decode("utf-8", "replace")


def parse_envelope(status: int, headers: Mapping[str, str], body: bytes, *, where: str) -> Any:
    """Return the ``data`` of a successful answer, or raise the matching error.

    Raises:
        APIError: (a subclass chosen by code and status) when the server reports an error.
        ResponseParseError: when the answer is not one of the known shapes.
    """
    try:
        payload = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        payload = None
        if status < 400:
            raise ResponseParseError(
                "the body is not JSON", where=where, excerpt=_excerpt(body)
            ) from None
    if not isinstance(payload, dict):
        if status >= 400:
            raise error_for_response(
                status=status,
                code=None,
                message=f"HTTP {status} with a non-JSON body: {_excerpt(body)!r}",
                retry_after=parse_retry_after(headers),
            )
        raise ResponseParseError("expected a JSON object", where=where, excerpt=_excerpt(body))
    error = _error_from(payload, status, headers)
    if error is not None:
        raise error
    if "data" not in payload:
        raise ResponseParseError(
            "the envelope has no 'data' field", where=where, excerpt=_excerpt(body)
        )
    return payload["data"]


def _error_from(
    payload: dict[str, Any], status: int, headers: Mapping[str, str]
) -> APIError | None:
    gateway = payload.get("error")
    if isinstance(gateway, dict):
        retry_after = parse_retry_after(headers)
        message = str(gateway.get("message") or gateway.get("type") or "gateway error")
        found = _REQUEST_ID_IN_MESSAGE.search(message)
        raw_code = gateway.get("code")
        return error_for_response(
            status=status if status >= 400 else 500,
            code=_normalise_code(raw_code) if raw_code not in (None, "") else None,
            message=message,
            request_id=found.group(1) if found else None,
            retry_after=retry_after,
        )
    raw_code = payload.get("code", 0 if status < 400 else None)
    code = _normalise_code(raw_code)
    if code == 0 and status < 400:
        return None  # the hot path: no Retry-After to read
    retry_after = parse_retry_after(headers)
    request_id = payload.get("request_id")
    return error_for_response(
        status=status if status >= 400 else 400,
        code=code,
        message=str(payload.get("message") or f"error code {code}"),
        request_id=str(request_id) if request_id else None,
        retry_after=retry_after,
    )


def _normalise_code(raw: Any) -> int | str | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        return str(raw)
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    if text.lower() in _SUCCESS_CODES:
        return 0
    try:
        return int(text)
    except ValueError:
        return text


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return value
    return None


def _normalise_task(data: Mapping[str, Any]) -> dict[str, Any]:
    inner = data.get("data")
    if isinstance(inner, dict) and ("task_id" in inner or "id" in inner):
        # Gateway wrapper (new-api style): the upstream task sits in data.data, the gateway's own
        # status and failure reason beside it. Prefer upstream fields; fall back to the wrapper's.
        merged = _normalise_task(inner)
        if not merged.get("task_status"):
            merged["task_status"] = data.get("status")
        if merged.get("task_status_msg") is None:
            merged["task_status_msg"] = data.get("fail_reason") or None
        if not merged.get("task_id"):
            merged["task_id"] = data.get("task_id")
        return merged
    info = data.get("task_info")
    info = info if isinstance(info, Mapping) else {}
    result = data.get("task_result")
    result = result if isinstance(result, Mapping) else {}
    videos = result.get("videos")
    if videos is None and isinstance(data.get("outputs"), list):
        videos = [
            item
            for item in data["outputs"]
            if isinstance(item, Mapping) and item.get("type", "video") == "video"
        ]
    return {
        "task_id": _first(data, "task_id", "id"),
        "task_status": _first(data, "task_status", "status"),
        "task_status_msg": _first(data, "task_status_msg", "message", "fail_reason"),
        "external_task_id": _first(info, "external_task_id")
        or _first(data, "external_task_id", "external_id"),
        "created_at": _first(data, "created_at", "create_time"),
        "updated_at": _first(data, "updated_at", "update_time"),
        "videos": videos if videos is not None else [],
    }


def parse_task(data: Any, kind: TaskKind, *, where: str = "") -> Task:
    """Build a :class:`Task` from any known task payload shape.

    Raises:
        ResponseParseError: naming the missing or malformed field.
    """
    if not isinstance(data, Mapping):
        raise ResponseParseError(f"expected a task object, got {type(data).__name__}", where=where)
    normalised = _normalise_task(data)
    for required in ("task_id", "task_status"):
        if normalised.get(required) in (None, ""):
            raise ResponseParseError(
                f"the task has no {required!r} (keys: {', '.join(sorted(map(str, data)))})",
                where=where,
            )
    try:
        wire = converter.structure(normalised, _WireTask)
    except BaseValidationError as exc:
        details = "; ".join(cattrs.transform_error(exc, path="task"))
        raise ResponseParseError(f"malformed task: {details}", where=where) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise ResponseParseError(f"malformed task: {exc}", where=where) from None
    return Task(
        id=wire.task_id,
        kind=kind,
        status=TaskStatus.parse(wire.task_status),
        raw_status=wire.task_status,
        status_msg=wire.task_status_msg or None,
        external_task_id=wire.external_task_id or None,
        created_at=wire.created_at,
        updated_at=wire.updated_at,
        videos=tuple(
            Video(
                id=video.id,
                url=video.url,
                watermark_url=video.watermark_url or None,
                duration=video.duration,
            )
            for video in wire.videos
        ),
        raw=dict(data),
    )


def parse_task_list(data: Any, kind: TaskKind, *, where: str = "") -> list[Task]:
    """Parse a list answer (``data`` is an array of tasks)."""
    if isinstance(data, Mapping):
        # Some gateways page as {"list": [...]} or {"tasks": [...]}.
        data = _first(data, "list", "tasks", "items", "result")
    if not isinstance(data, list):
        raise ResponseParseError("expected a list of tasks", where=where)
    return [parse_task(item, kind, where=where) for item in data]


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _drop_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(item) for item in value]
    return value


def request_body(request: TaskRequest, *, external_task_id: str | None = None) -> dict[str, Any]:
    """The JSON body for a create: ``None`` fields left out, ``watermark`` as ``watermark_info``.

    Examples:
        >>> from kling_async import TextToVideo
        >>> request_body(TextToVideo(prompt="hi", mode="pro"), external_task_id="e1")
        {'mode': 'pro', 'duration': '5', 'prompt': 'hi', 'external_task_id': 'e1'}
    """
    body: dict[str, Any] = _drop_none(converter.unstructure(request))
    watermark = body.pop("watermark", None)
    if watermark is not None:
        body["watermark_info"] = {"enabled": watermark}
    if external_task_id is not None:
        body["external_task_id"] = external_task_id
    return body
