"""Gateway dialects: the one place that knows how gateways re-shape Kling's answers.

Kling answers ``{"code": 0, "message", "request_id", "data": {<task>}}``. Gateways in front of it
(CometAPI, resellers running the open-source new-api relay, others) answer the same facts in
other shapes. Every such difference the library reads is a row of a table here, so supporting a
new gateway is an entry, not a new code path:

* error codes that are not Kling's ([`NOT_FOUND_CODES`][kling_async.dialects.NOT_FOUND_CODES], [`RELAY_CODES`][kling_async.dialects.RELAY_CODES]);
* messages that mean something specific ([`SATURATION_MARKERS`][kling_async.dialects.SATURATION_MARKERS],
  [`MODEL_MISSING_MARKERS`][kling_async.dialects.MODEL_MISSING_MARKERS]);
* where a task hides inside a gateway's own record ([`is_envelope`][kling_async.dialects.is_envelope], [`TASK_KEYS`][kling_async.dialects.TASK_KEYS]) and
  which of its fields hold a result URL ([`RESULT_URL_KEYS`][kling_async.dialects.RESULT_URL_KEYS]).

Which dialect CometAPI itself speaks is unconfirmed; the client reads all of them without a
setting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import APIError, GatewaySaturatedError, NotFoundError

__all__ = [
    "MODEL_MISSING_MARKERS",
    "NOT_FOUND_CODES",
    "RELAY_CODES",
    "RESULT_URL_KEYS",
    "SATURATION_MARKERS",
    "TASK_KEYS",
    "EXPLICIT_DEFAULTS",
    "error_class",
    "explain",
    "is_bare_task",
    "is_envelope",
    "relayed_upstream",
]

NOT_FOUND_CODES = frozenset({"task_not_exist", "task_not_found", "not_found"})
"""Gateway codes meaning "no such task" (new-api: 400 ``task_not_exist``)."""

RELAY_CODES = frozenset({"fail_to_fetch_task", "task_failed", "upstream_error", "bad_response"})
"""Gateway codes whose ``message`` may carry the upstream's own JSON answer as a string."""

SATURATION_MARKERS = ("上游负载已饱和", "upstream saturated", "upstream load is saturated")
"""Message fragments of "the upstream is at capacity": new-api rewrites every upstream 429 so."""

MODEL_MISSING_MARKERS = (
    "model name not specified",
    "model name is required",
    "model_name is required",
)
"""Message fragments of a gateway refusing a create without ``model_name``."""

TASK_KEYS = ("task_id", "id", "task_status", "status")
"""Keys that make an object a task (or a gateway's record of one), not an envelope."""

RESULT_URL_KEYS = ("result_url", "url", "video_url")
"""Fields of a gateway's task record holding the result's URL (used when no result list is)."""

EXPLICIT_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "text2video": {"aspect_ratio": "16:9"},
}
"""Fields sent even when the caller leaves them out, by task kind, because a gateway's default
differs from Kling's (new-api turns a missing ``aspect_ratio`` into 1:1; Kling's is 16:9)."""

_MAX_RELAYED_BODY = 64 * 1024


def is_envelope(value: Mapping[str, Any]) -> bool:
    """Whether *value* is an API envelope (``code`` with ``data`` or ``message``), not a task."""
    return (
        "code" in value
        and ("data" in value or "message" in value)
        and not any(key in value for key in TASK_KEYS)
    )


def is_bare_task(payload: Mapping[str, Any]) -> bool:
    """Whether an answer without ``data`` is itself a task (new-api's create answer).

    Examples:
        >>> is_bare_task({"id": "task_1", "task_id": "task_1", "object": "video", "status": "queued"})
        True
    """
    has_id = any(isinstance(payload.get(key), str | int) for key in ("task_id", "id"))
    has_status = any(isinstance(payload.get(key), str) for key in ("task_status", "status"))
    return has_id and has_status


def relayed_upstream(message: str) -> Mapping[str, Any] | None:
    """The upstream's answer when a gateway relays it as a JSON string in ``message``.

    Examples:
        >>> relayed_upstream('{"code": 1303, "message": "parallel task over limit"}')["code"]
        1303
        >>> relayed_upstream("plain words") is None
        True
    """
    text = message.strip()
    if not text.startswith("{") or len(text) > _MAX_RELAYED_BODY:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    error = value.get("error")
    if isinstance(error, dict) and "code" not in value:
        value = error  # an OpenAI-style error object relayed as is
    return value if "code" in value else None


def error_class(code: int | str | None, message: str) -> type[APIError] | None:
    """The error class a gateway's code or message means, or ``None`` to decide by Kling's table."""
    lowered = message.lower()
    if any(marker in lowered for marker in SATURATION_MARKERS):
        return GatewaySaturatedError
    if isinstance(code, str) and code.lower() in NOT_FOUND_CODES:
        return NotFoundError
    return None


def explain(message: str) -> str:
    """Add what the user can do to a gateway's message, where the library knows it."""
    if any(marker in message.lower() for marker in MODEL_MISSING_MARKERS):
        return (
            f"{message} -- this gateway needs model_name on every create: set a default with "
            "KlingClient(model_name='kling-v2-6') (or Provider(default_model=...)), or pass "
            "model_name= on the request"
        )
    return message
