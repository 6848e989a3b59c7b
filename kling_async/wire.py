"""The wire format: request bodies out, envelopes and task objects in.

Parsing is tolerant of every shape the API notes describe, because gateways differ:

* the Kling envelope ``{"code": 0, "message": ..., "request_id": ..., "data": {...}}`` with
  ``code`` as ``0``, ``"0"`` or ``"success"``;
* CometAPI's own errors ``{"error": {"code": ..., "message": "... (request id: X)", ...}}``;
* the gateway-wrapped task ``{"task_id", "status": "SUCCESS", "fail_reason", "data": {<task>}}``;
* the legacy task (``task_id``/``task_status``/``task_result.videos``) and the new-standard task
  (``id``/``status``/``outputs``);
* timestamps in milliseconds or seconds, statuses in any case and spelling.

Anything that still cannot be read raises [`ResponseParseError`][kling_async.errors.ResponseParseError] naming what was
wrong; a ``KeyError`` or ``TypeError`` never escapes. One ``cattrs.Converter``, built here,
does the structuring; the global converter is never touched.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from hashlib import blake2b
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import BaseValidationError

from . import dialects
from ._urls import is_http_url
from .account import AccountCosts, ResourcePack
from .errors import APIError, MissingResultError, ResponseParseError, error_for_response
from .models import NO_RAW, Task, TaskKind, TaskRequest, TaskStatus, Video
from .retry import parse_retry_after

__all__ = [
    "converter",
    "fingerprint",
    "item_id",
    "parse_account_costs",
    "parse_envelope",
    "parse_task",
    "parse_task_list",
    "request_body",
    "task_items",
]

converter = cattrs.Converter(forbid_extra_keys=False)
"""The library's one converter (never ``cattrs.global_converter``)."""

_SUCCESS_CODES = {"0", "success", "succeed", "ok"}
_REQUEST_ID_IN_MESSAGE = re.compile(r"\(request id: ([^)]+)\)")
_MS_THRESHOLD = 100_000_000_000  # later than 5138 AD in seconds, earlier than 1973 in ms


def _timestamp(value: Any, _: type) -> datetime | None:
    if value == "":
        return None
    if isinstance(value, bool):
        raise TypeError("a timestamp cannot be a boolean")
    return _epoch(value)


def _epoch(value: Any) -> datetime | None:
    """Seconds or milliseconds since the epoch (told apart by size) as a UTC time."""
    if value is None:
        return None
    number = float(value)
    return datetime.fromtimestamp(
        number / 1000.0 if number >= _MS_THRESHOLD else number, tz=timezone.utc
    )


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


_T = TypeVar("_T")

_REQUEST_ID_KEY = b'"request_id"'
_REQUEST_ID_VALUE = re.compile(rb'\s*:\s*(?:"[^"\\]*"|-?\d+)')


def fingerprint(body: bytes) -> bytes:
    """A digest of an answer *body*, blind to its ``request_id`` values.

    Most status checks answer what the one before did, but in a fresh envelope: Kling (and
    a gateway that keeps Kling's envelope inside its own) gives every answer a new
    ``request_id``. Two bodies with equal digests are byte-identical but for those values, so
    they read as the same task, and the client keeps the task it has instead of decoding and
    parsing the answer again. BLAKE2b with 128 bits makes a false match between two answers
    a practical impossibility, unlike Python's 64-bit ``hash``.

    Examples:
        >>> first = b'{"code": 0, "request_id": "a1", "data": {"task_status": "submitted"}}'
        >>> fingerprint(first) == fingerprint(first.replace(b"a1", b"b2"))
        True
        >>> fingerprint(first) == fingerprint(first.replace(b"submitted", b"processing"))
        False
    """
    digest = blake2b(digest_size=16)
    view = memoryview(body)
    start = 0
    key = body.find(_REQUEST_ID_KEY)
    while key >= 0:
        after = key + len(_REQUEST_ID_KEY)
        value = _REQUEST_ID_VALUE.match(body, after)
        if value is not None:
            digest.update(view[start:key])
            start = value.end()
        key = body.find(_REQUEST_ID_KEY, after)
    digest.update(view[start:])
    return digest.digest()


_RAW_KEPT = frozenset({TaskStatus.SUCCEED, TaskStatus.FAILED, TaskStatus.UNKNOWN})
"""Statuses whose task keeps its raw answer even in the scheduler: the results of a finished
task are read from it, and it is all there is to debug a status the library does not know."""

MAX_NESTING = 8
"""How many gateway records and upstream envelopes a task may be wrapped in before the answer is
refused as malformed. JSON nested deeper than the interpreter's recursion limit (about 1,000
levels) is refused while decoding."""


def _decode(body: bytes, *, where: str) -> Any:
    try:
        return json.loads(body) if body else None
    except RecursionError:
        raise ResponseParseError(
            "the body is nested too deeply to decode", where=where, excerpt=_excerpt(body)
        ) from None


def parse_envelope(status: int, headers: Mapping[str, str], body: bytes, *, where: str) -> Any:
    """Return the ``data`` of a successful answer, or raise the matching error.

    Besides Kling's envelope, a gateway's bare task (new-api answers a create with the task
    object itself, no envelope) is returned as it is.

    Raises:
        APIError: (a subclass chosen by code and status) when the server reports an error.
        ResponseParseError: when the answer is not one of the known shapes.
    """
    try:
        payload = _decode(body, where=where)
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
        if dialects.is_bare_task(payload):
            return payload
        raise ResponseParseError(
            "the envelope has no 'data' field", where=where, excerpt=_excerpt(body)
        )
    return payload["data"]


def _error_from(
    payload: Mapping[str, Any], status: int, headers: Mapping[str, str]
) -> APIError | None:
    gateway = payload.get("error")
    if isinstance(gateway, dict):
        retry_after = parse_retry_after(headers)
        message = str(gateway.get("message") or gateway.get("type") or "gateway error")
        found = _REQUEST_ID_IN_MESSAGE.search(message)
        raw_code = gateway.get("code")
        return _api_error(
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
    request_id = payload.get("request_id")
    return _api_error(
        status=status if status >= 400 else 400,
        code=code,
        message=str(payload.get("message") or f"error code {code}"),
        request_id=str(request_id) if request_id else None,
        retry_after=parse_retry_after(headers),
    )


def _api_error(
    *,
    status: int,
    code: int | str | None,
    message: str,
    request_id: str | None,
    retry_after: float | None,
) -> APIError:
    """Build the error, first recovering Kling's own answer when a gateway relays it."""
    upstream = dialects.relayed_upstream(message)
    if upstream is not None:
        upstream_code = _normalise_code(upstream.get("code"))
        if upstream_code not in (None, 0):
            code = upstream_code
            message = str(upstream.get("message") or message)
            upstream_id = upstream.get("request_id")
            request_id = str(upstream_id) if upstream_id else request_id
    cls = dialects.error_class(code, message)
    message = dialects.explain(message)
    if cls is not None:
        return cls(
            message, status=status, code=code, request_id=request_id, retry_after=retry_after
        )
    return error_for_response(
        status=status, code=code, message=message, request_id=request_id, retry_after=retry_after
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
            error = _error_from(inner, 200, {})
            if error is not None:
                if TaskStatus.parse(str(_first(current, "task_status", "status") or "")) in (
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
        outer = _first(layer, "task_status", "status")
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
                    f"task_result.videos must be a list of objects, got {_shape(videos)}",
                    where=where,
                )
            return videos
        outputs = layer.get("outputs")
        if outputs is not None:
            if not isinstance(outputs, list) or not all(isinstance(v, Mapping) for v in outputs):
                raise ResponseParseError(
                    f"outputs must be a list of objects, got {_shape(outputs)}", where=where
                )
            return [item for item in outputs if item.get("type", "video") == "video"]
    # A gateway's lone result URL stands for the video; image and audio tasks list theirs.
    url = _layered(layers, *dialects.RESULT_URL_KEYS) if fallback else None
    return [{"url": url}] if isinstance(url, str) and url else []


def _shape(value: Any) -> str:
    if isinstance(value, list):
        kinds = sorted({type(item).__name__ for item in value})
        return f"a list of {', '.join(kinds)}" if kinds else "an empty list"
    return type(value).__name__


def _progress(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(str(value).strip().rstrip("%"))
    except ValueError:
        return None
    return max(0, min(100, int(number))) if math.isfinite(number) else None  # NaN, inf: none


def _normalise_task(data: Mapping[str, Any], kind: TaskKind, where: str) -> dict[str, Any]:
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
        "task_status_msg": _layered(layers, "task_status_msg", "fail_reason", "message"),
        "external_task_id": _first(info, "external_task_id")
        or _layered(layers, "external_task_id", "external_id"),
        "created_at": _layered(layers, "created_at", "create_time", "submit_time"),
        "updated_at": _layered(layers, "updated_at", "update_time"),
        "progress": _layered(layers, "progress"),
        "videos": _results(layers, where, fallback=kind.results == "videos"),
    }


_NOT_PLAIN = frozenset(
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
        *dialects.RESULT_URL_KEYS,
    }
)
"""Keys that only a gateway's record or the new-standard task has: an answer holding none of
them is Kling's legacy task object as it is, with nothing to weigh against another layer."""


_PLAIN_TIME_TYPES = (int, float, type(None))


def _plain_task(data: Mapping[str, Any]) -> _WireTask | None:
    """The task of an unfinished legacy answer, read without the general walk (or ``None``).

    Most status answers are this one shape: Kling's own task object, running, with text and
    numbers where the reference puts them. Reading it directly costs a fraction of the
    gateway-layer walk and the converter, and gives the same task; anything else (a gateway's
    record, a result list, an odd type) returns ``None`` and takes the general path, which
    also words every error.
    """
    if not data.keys().isdisjoint(_NOT_PLAIN):
        return None
    get = data.get
    task_id, raw_status, message = get("task_id"), get("task_status"), get("task_status_msg")
    if type(task_id) is not str or not task_id or type(raw_status) is not str or not raw_status:
        return None
    if message is not None and type(message) is not str:
        return None
    result = get("task_result")
    videos = result.get("videos") if isinstance(result, Mapping) else None
    if videos is not None and (type(videos) is not list or videos):
        return None
    info = get("task_info")
    external_id = info.get("external_task_id") if isinstance(info, Mapping) else None
    if not external_id:
        external_id = get("external_task_id")
    if external_id is not None and type(external_id) is not str:
        return None
    created, updated = get("created_at"), get("updated_at")
    if type(created) not in _PLAIN_TIME_TYPES or type(updated) not in _PLAIN_TIME_TYPES:
        return None  # text, or a boolean: the converter's hook knows what to do with those
    try:
        created_at, updated_at = _epoch(created), _epoch(updated)
    except (ValueError, OverflowError, OSError):
        return None
    return _WireTask(
        task_id=task_id,
        task_status=raw_status,
        task_status_msg=message or None,
        external_task_id=external_id or None,
        created_at=created_at,
        updated_at=updated_at,
    )


def _kept(old: _T, new: _T) -> _T:
    """*old* when it equals *new*: one object shared instead of an equal copy."""
    return old if old == new else new


def parse_task(
    data: Any,
    kind: TaskKind,
    *,
    where: str = "",
    require_result: bool = True,
    fingerprint: bytes | None = None,
    keep_raw: bool = True,
    like: Task | None = None,
) -> Task:
    """Build a [`Task`][kling_async.models.Task] from any known task payload shape.

    A task that reports success must carry at least one result with an http(s) URL (unless
    *require_result* is false: an unsigned callback, which only prompts a confirming GET).
    *fingerprint* is stored on the task (see [`fingerprint`][kling_async.wire.fingerprint]);
    with *keep_raw* false an unfinished task holds an empty ``raw`` (a finished one always
    holds its answer: its images and sound tracks are read from it; so does one whose status is
    unknown). Values equal to those of *like* (the same task as last seen) are taken from it,
    so that the many tasks a scheduler keeps do not each hold copies of what did not change.

    Raises:
        ResponseParseError: naming the missing or malformed field.
        MissingResultError: a success with nothing to download (the raw answer attached).
        APIError: an upstream envelope inside a gateway's record reports an error.
    """
    if not isinstance(data, Mapping):
        raise ResponseParseError(f"expected a task object, got {type(data).__name__}", where=where)
    wire = _plain_task(data)
    progress: int | None = None
    upstream_id: Any = None
    if wire is None:
        normalised = _normalise_task(data, kind, where)
        for required in ("task_id", "task_status"):
            if normalised.get(required) in (None, ""):
                raise ResponseParseError(
                    f"the task has no {required!r} (keys: {', '.join(sorted(map(str, data)))})",
                    where=where,
                )
        progress = _progress(normalised.pop("progress"))
        upstream_id = normalised.pop("upstream_id")
        try:
            wire = converter.structure(normalised, _WireTask)
        except BaseValidationError as exc:
            details = "; ".join(cattrs.transform_error(exc, path="task"))
            raise ResponseParseError(f"malformed task: {details}", where=where) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ResponseParseError(f"malformed task: {exc}", where=where) from None
    status = TaskStatus.parse(wire.task_status)
    videos = tuple(
        Video(
            id=video.id,
            url=video.url,
            watermark_url=video.watermark_url or None,
            duration=video.duration,
        )
        for video in wire.videos
    )
    task_id, raw_status, external_id = wire.task_id, wire.task_status, wire.external_task_id
    created_at, updated_at = wire.created_at, wire.updated_at
    if like is not None and like.id == task_id:
        task_id = like.id
        raw_status = _kept(like.raw_status, raw_status)
        external_id = _kept(like.external_task_id, external_id)
        created_at = _kept(like.created_at, created_at)
        updated_at = _kept(like.updated_at, updated_at)
    task = Task(
        id=task_id,
        kind=kind,
        status=status,
        raw_status=raw_status,
        status_msg=wire.task_status_msg or None,
        external_task_id=external_id or None,
        created_at=created_at,
        updated_at=updated_at,
        videos=videos,
        upstream_id=str(upstream_id) if upstream_id is not None else None,
        progress=progress if progress is not None or status is not TaskStatus.SUCCEED else 100,
        raw=dict(data) if keep_raw or status in _RAW_KEPT else NO_RAW,
        fingerprint=fingerprint,
    )
    if (
        require_result
        and status is TaskStatus.SUCCEED
        and not any(is_http_url(result.url) for result in task.results)
    ):
        noun = kind.results[:-1]  # "video", "image" or "audio"
        missing = f"no {noun} has an http(s) URL" if task.results else f"its answer holds no {noun}"
        raise MissingResultError(missing, task_id=wire.task_id, raw=data, where=where)
    return task


def task_items(data: Any, *, where: str = "") -> list[Any]:
    """The task objects of a list answer: ``data`` itself, or its ``result``/``list``/... array.

    Raises:
        ResponseParseError: the answer holds no array of tasks.
    """
    if isinstance(data, Mapping):
        # Some gateways page as {"list": [...]} or {"tasks": [...]}; Kling's /tasks as
        # {"result": [...]}.
        data = _first(data, "list", "tasks", "items", "result")
    if not isinstance(data, list):
        raise ResponseParseError("expected a list of tasks", where=where)
    return data


def item_id(item: Any) -> str | None:
    """The id of one task object of a list answer (``task_id`` or ``id``), if it has one."""
    if not isinstance(item, Mapping):
        return None
    ident = _first(item, "task_id", "id")
    return str(ident) if ident is not None else None


def parse_task_list(data: Any, kind: TaskKind, *, where: str = "") -> list[Task]:
    """Parse a list answer (``data`` is an array of tasks)."""
    return [parse_task(item, kind, where=where) for item in task_items(data, where=where)]


_PACK_FIELDS = {
    "name": "resource_pack_name",
    "id": "resource_pack_id",
    "type": "resource_pack_type",
    "total": "total_quantity",
    "remaining": "remaining_quantity",
    "status": "status",
    "purchased_at": "purchase_time",
    "effective_at": "effective_time",
    "expires_at": "invalid_time",
}


def parse_account_costs(data: Any, *, where: str = "") -> AccountCosts:
    """Read ``GET /account/costs``'s ``data`` (``resource_pack_subscribe_infos[]``).

    Raises:
        ResponseParseError: the answer holds no list of packs, or a pack's field has the wrong
            type (a quantity that is not a number, say).
    """
    if not isinstance(data, Mapping):
        raise ResponseParseError(f"expected an object, got {_shape(data)}", where=where)
    infos = data.get("resource_pack_subscribe_infos", [])
    if not isinstance(infos, list) or not all(isinstance(info, Mapping) for info in infos):
        raise ResponseParseError(
            f"resource_pack_subscribe_infos must be a list of objects, got {_shape(infos)}",
            where=where,
        )
    packs = []
    for info in infos:
        fields = {ours: info.get(theirs) for ours, theirs in _PACK_FIELDS.items()}
        try:
            packs.append(converter.structure(fields, ResourcePack))
        except BaseValidationError as exc:
            details = "; ".join(cattrs.transform_error(exc, path="pack"))
            raise ResponseParseError(f"malformed resource pack: {details}", where=where) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ResponseParseError(f"malformed resource pack: {exc}", where=where) from None
    return AccountCosts(packs=tuple(packs), raw=dict(data))


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
    body.pop("relax_rules", None)  # a client-side switch, never sent
    watermark = body.pop("watermark", None)
    if watermark is not None:
        body["watermark_info"] = {"enabled": watermark}
    if external_task_id is not None:
        body["external_task_id"] = external_task_id
    return body
