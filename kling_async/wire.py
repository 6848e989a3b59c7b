"""The wire format: request bodies out, envelopes and task objects in.

Parsing is tolerant of every shape the API notes describe, because gateways differ:

* the envelopes, Kling's and the gateways' (read by ``_envelope``, whose
  [`parse_envelope`][kling_async.wire.parse_envelope] and
  [`fingerprint`][kling_async.wire.fingerprint] this module re-exports);
* the gateway-wrapped task ``{"task_id", "status": "SUCCESS", "fail_reason", "data": {<task>}}``;
* the legacy task (``task_id``/``task_status``/``task_result.videos``) and the new-standard task
  (``id``/``status``/``outputs``);
* timestamps in milliseconds or seconds, statuses in any case and spelling.

Anything that still cannot be read raises [`ResponseParseError`][kling_async.errors.ResponseParseError] naming what was
wrong; a ``KeyError`` or ``TypeError`` never escapes. One ``cattrs.Converter``, built here,
does the structuring; the global converter is never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import BaseValidationError

from ._envelope import fingerprint, parse_envelope
from ._gateway_layers import GATEWAY_KEYS, first, normalise_task, progress_percent, shape
from ._gateway_layers import MAX_NESTING as MAX_NESTING  # documented here before the split
from ._urls import is_http_url
from .account import AccountCosts, ResourcePack
from .errors import MissingResultError, ResponseParseError
from .models import _STATUS_ALIASES, NO_RAW, Task, TaskKind, TaskRequest, TaskStatus, Video

_log = logging.getLogger("kling_async.wire")

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

_MS_THRESHOLD = 100_000_000_000  # later than 5138 AD in seconds, earlier than 1973 in ms


def _timestamp(value: Any, _: type) -> datetime | None:
    if value == "":
        return None
    if isinstance(value, bool):
        raise TypeError("a timestamp cannot be a boolean")
    return _epoch(value)


_MS_LIMIT = 253_402_300_800_000  # 10000-01-01 in ms: past what a datetime holds
_MILLISECONDS = tuple(timedelta(milliseconds=millis) for millis in range(1000))


def _epoch(value: Any) -> datetime | None:
    """Seconds or milliseconds since the epoch (told apart by size) as a UTC time.

    A stamp in whole milliseconds, as Kling sends, is looked up among the ones seen lately
    (a task's ``created_at`` comes back in every answer about it), else made exactly from its
    second (cached: the stamps a client sees cluster in time) plus its milliseconds. The
    table is emptied when full rather than kept in LRU order: a fresh ``updated_at`` per
    answer would pay that bookkeeping on every miss.
    """
    if type(value) is int and _MS_THRESHOLD <= value < _MS_LIMIT:
        found = _STAMPS.get(value)
        if found is None:
            if len(_STAMPS) >= _STAMPS_KEPT:
                _STAMPS.clear()  # the ones still in use come back at their next answer
            seconds, millis = divmod(value, 1000)
            found = _STAMPS[value] = _epoch_second(seconds) + _MILLISECONDS[millis]
        return found
    return _epoch_any(value)


_STAMPS: dict[int, datetime] = {}
_STAMPS_KEPT = 1024  # about 150 KB when full


@lru_cache(maxsize=256)
def _epoch_second(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


@lru_cache(maxsize=1024)  # about 180 KB when full
def _epoch_any(value: Any) -> datetime | None:
    """Any other stamp: seconds, text, a float (cached: it comes back in every answer)."""
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


# Mutable, unlike the public models: these live only while an answer is read, and a frozen
# class pays object.__setattr__ per field on every changed answer a status check reads.
@attrs.define
class _WireVideo:
    id: str = ""
    url: str = ""
    watermark_url: str | None = None
    duration: float | None = None


@attrs.define
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


_T = TypeVar("_T")

_RAW_KEPT = frozenset({TaskStatus.SUCCEED, TaskStatus.FAILED, TaskStatus.UNKNOWN})
"""Statuses whose task keeps its raw answer even in the scheduler: the results of a finished
task are read from it, and it is all there is to debug a status the library does not know."""

_PLAIN_TIME_TYPES = (int, float, type(None))


def _plain_task(
    data: Mapping[str, Any],
    kind: TaskKind,
    fingerprint: bytes | None,
    keep_raw: bool,
    like: Task | None,
) -> Task | None:
    """The task of an unfinished legacy answer, read without the general walk (or ``None``).

    Most status answers are this one shape: Kling's own task object, running, with text and
    numbers where the reference puts them. Reading it directly costs a fraction of the
    gateway-layer walk and the converter, and gives the same task; anything else (a gateway's
    record, a result list, a finished or unknown status, an odd type) returns ``None`` and
    takes the general path, which also words every error. It builds the task itself: this
    runs once per changed answer, and handing fields back to be unpacked costs a tenth of it.
    """
    if not data.keys().isdisjoint(GATEWAY_KEYS):
        return None
    get = data.get
    task_id, raw_status, message = get("task_id"), get("task_status"), get("task_status_msg")
    if type(task_id) is not str or not task_id or type(raw_status) is not str or not raw_status:
        return None
    # The table's own spelling first: a class method call costs more than the look-up.
    status = _STATUS_ALIASES.get(raw_status) or TaskStatus.parse(raw_status)
    if status in _RAW_KEPT:
        return None  # finished (its results are read) or unknown (kept whole)
    if message is not None and type(message) is not str:
        return None
    result = get("task_result")
    # `type(...) is dict` first: decoded JSON is always a dict, and the ABC check costs more.
    if type(result) is dict or isinstance(result, Mapping):
        videos = result.get("videos")
        if videos is not None and (type(videos) is not list or videos):
            return None
    info = get("task_info")
    external_id = (
        info.get("external_task_id") if type(info) is dict or isinstance(info, Mapping) else None
    )
    if not external_id:
        external_id = get("external_task_id")
    if external_id is not None and type(external_id) is not str:
        return None
    created, updated = get("created_at"), get("updated_at")
    if type(created) not in _PLAIN_TIME_TYPES or type(updated) not in _PLAIN_TIME_TYPES:
        return None  # text, or a boolean: the converter's hook knows what to do with those
    # A task's created_at comes back in every answer: its stamp is found without a call.
    created_at = _STAMPS.get(created) if type(created) is int else None
    try:
        if created_at is None:
            created_at = _epoch(created)
        updated_at = _epoch(updated)
    except (ValueError, OverflowError, OSError):
        return None
    if like is not None and like.id == task_id:
        # Shared with the task as last seen rather than equal copies (see parse_task).
        task_id = like.id
        if like.raw_status == raw_status:
            raw_status = like.raw_status
        if like.created_at == created_at:
            created_at = like.created_at
        if like.updated_at == updated_at:
            updated_at = like.updated_at
        if external_id and like.external_task_id == external_id:
            external_id = like.external_task_id
    # Positional, in Task's field order (tests/test_wire.py pins it): matching thirteen
    # keywords costs a third of making the task.
    return Task(
        task_id,  # id
        kind,  # kind
        status,  # status
        raw_status,  # raw_status
        message or None,  # status_msg
        external_id or None,  # external_task_id
        created_at,  # created_at
        updated_at,  # updated_at
        (),  # videos: a running task has none
        None,  # upstream_id: a gateway's field
        None,  # progress: a gateway's field
        dict(data) if keep_raw else NO_RAW,  # raw
        fingerprint,  # fingerprint
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
    asked_id: str | None = None,
) -> Task:
    """Build a [`Task`][kling_async.models.Task] from any known task payload shape.

    A task that reports success must carry at least one result with an http(s) URL (unless
    *require_result* is false: an unsigned callback, which only prompts a confirming GET).
    *fingerprint* is stored on the task (see [`fingerprint`][kling_async.wire.fingerprint]);
    with *keep_raw* false an unfinished task holds an empty ``raw`` (a finished one always
    holds its answer: its images and sound tracks are read from it; so does one whose status is
    unknown). Values equal to those of *like* (the same task as last seen) are taken from it,
    so that the many tasks a scheduler keeps do not each hold copies of what did not change.
    *asked_id* is the id a by-id query asked for: it stands in for an answer that names no
    task (crazyrouter answers a query with ``{status, url, error}`` alone, kling-api.md §2.4).

    Raises:
        ResponseParseError: naming the missing or malformed field.
        MissingResultError: a success with nothing to download (the raw answer attached).
        APIError: an upstream envelope inside a gateway's record reports an error.
    """
    if type(data) is not dict and not isinstance(data, Mapping):
        raise ResponseParseError(f"expected a task object, got {type(data).__name__}", where=where)
    plain = _plain_task(data, kind, fingerprint, keep_raw, like)
    if plain is not None:
        return plain
    normalised = normalise_task(data, kind, where)
    if asked_id and normalised.get("task_id") in (None, ""):
        normalised["task_id"] = asked_id
    for required in ("task_id", "task_status"):
        if normalised.get(required) in (None, ""):
            raise ResponseParseError(
                f"the task has no {required!r} (keys: {', '.join(sorted(map(str, data)))})",
                where=where,
            )
    progress = progress_percent(normalised.pop("progress"))
    upstream_id = normalised.pop("upstream_id")
    try:
        wire = converter.structure(normalised, _WireTask)
    except BaseValidationError as exc:
        details = "; ".join(cattrs.transform_error(exc, path="task"))
        raise ResponseParseError(f"malformed task: {details}", where=where) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise ResponseParseError(f"malformed task: {exc}", where=where) from None
    videos = tuple(
        Video(
            id=video.id,
            url=video.url,
            watermark_url=video.watermark_url or None,
            duration=video.duration,
        )
        for video in wire.videos
    )
    task_id, raw_status, message = wire.task_id, wire.task_status, wire.task_status_msg
    external_id, created_at, updated_at = wire.external_task_id, wire.created_at, wire.updated_at
    # The table's own spelling first: a class method call costs more than the look-up.
    status = _STATUS_ALIASES.get(raw_status) or TaskStatus.parse(raw_status)
    if like is not None and like.id == task_id:
        task_id = like.id
        raw_status = _kept(like.raw_status, raw_status)
        external_id = _kept(like.external_task_id, external_id)
        created_at = _kept(like.created_at, created_at)
        updated_at = _kept(like.updated_at, updated_at)
    # Positional, in Task's field order (tests/test_wire.py pins it): matching thirteen
    # keywords costs a third of making the task, once per changed answer and per listed task.
    task = Task(
        task_id,  # id
        kind,  # kind
        status,  # status
        raw_status,  # raw_status
        message or None,  # status_msg
        external_id or None,  # external_task_id
        created_at,  # created_at
        updated_at,  # updated_at
        videos,  # videos
        str(upstream_id) if upstream_id is not None else None,  # upstream_id
        progress if progress is not None or status is not TaskStatus.SUCCEED else 100,  # progress
        dict(data) if keep_raw or status in _RAW_KEPT else NO_RAW,  # raw
        fingerprint,  # fingerprint
    )
    if (
        require_result
        and status is TaskStatus.SUCCEED
        and not any(is_http_url(result.url) for result in task.results)
    ):
        noun = kind.results[:-1]  # "video", "image" or "audio"
        missing = f"no {noun} has an http(s) URL" if task.results else f"its answer holds no {noun}"
        raise MissingResultError(missing, task_id=task.id, raw=data, where=where)
    return task


def task_items(data: Any, *, where: str = "") -> list[Any]:
    """The task objects of a list answer: ``data`` itself, or its ``result``/``list``/... array.

    Raises:
        ResponseParseError: the answer holds no array of tasks.
    """
    if isinstance(data, Mapping):
        # Some gateways page as {"list": [...]} or {"tasks": [...]}; Kling's /tasks as
        # {"result": [...]}.
        data = first(data, "list", "tasks", "items", "result")
    if not isinstance(data, list):
        raise ResponseParseError("expected a list of tasks", where=where)
    return data


def item_id(item: Any) -> str | None:
    """The id of one task object of a list answer (``task_id`` or ``id``), if it has one."""
    if not isinstance(item, Mapping):
        return None
    ident = first(item, "task_id", "id")
    return str(ident) if ident is not None else None


def parse_task_list(
    data: Any, kind: TaskKind, *, where: str = "", strict: bool = False
) -> list[Task]:
    """Parse a list answer (``data`` is an array of tasks).

    An item that cannot be read is left out (logged at DEBUG) rather than failing the page:
    one task among many, say one whose results were cleared after 30 days and that still
    reports success, must not stop the others from being seen. A caller that wanted the
    task left out reads it on its own, and gets its error then. With *strict*, an unreadable
    item raises instead (where a task left out would be taken for one that does not exist).

    Raises:
        ResponseParseError: the answer holds no array of tasks (or, with *strict*, an item
            cannot be read).
    """
    tasks: list[Task] = []
    for item in task_items(data, where=where):
        try:
            tasks.append(parse_task(item, kind, where=where))
        except ResponseParseError as exc:  # noqa: PERF203 - per item, by design
            if strict:
                raise
            _log.debug("left a task out of a list answer: %s", exc)
    return tasks


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
        raise ResponseParseError(f"expected an object, got {shape(data)}", where=where)
    infos = data.get("resource_pack_subscribe_infos", [])
    if not isinstance(infos, list) or not all(isinstance(info, Mapping) for info in infos):
        raise ResponseParseError(
            f"resource_pack_subscribe_infos must be a list of objects, got {shape(infos)}",
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
