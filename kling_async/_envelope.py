"""Envelopes in: an answer's body to its ``data``, or to the typed error it reports.

Kling's envelope ``{"code": 0, "message": ..., "request_id": ..., "data": {...}}`` with ``code``
as ``0``, ``"0"`` or ``"success"``; CometAPI's own errors ``{"error": {"code": ..., "message":
"... (request id: X)", ...}}``; a gateway's bare task. Also the answer's
[`fingerprint`][kling_async.wire.fingerprint], which lets a status check skip reading an answer
that repeats the last. [`wire`][kling_async.wire] re-exports the public names; what is inside
``data`` is read there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from hashlib import blake2b
from typing import Any

from . import dialects
from .errors import APIError, ResponseParseError, error_for_response
from .retry import parse_retry_after

__all__ = ["error_from", "excerpt", "fingerprint", "parse_envelope"]

_SUCCESS_CODES = {"0", "success", "succeed", "ok"}
_REQUEST_ID_IN_MESSAGE = re.compile(r"\(request id: ([^)]+)\)")


def excerpt(body: bytes) -> str:
    return body[:120].decode("utf-8", "replace")


_strip_request_ids = re.compile(rb'"request_id"\s*:\s*(?:"[^"\\]*"|-?\d+)').sub
"""Removes every ``"request_id"`` member whose value is a string without escapes or an integer."""


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
    # The body without its request ids, cut out in one call: searching for each one and
    # hashing the bytes between them cost two searches and several calls more per answer.
    return blake2b(_strip_request_ids(b"", body), digest_size=16).digest()


def _decode(body: bytes, *, where: str) -> Any:
    try:
        if body[:1] == b"{" and body[1:2] != b"\0":
            # An object in UTF-8, as every API answer is: json.loads would first sniff the
            # encoding (a Python function, once per answer) to tell it from UTF-16 or -32.
            return json.loads(body.decode("utf-8", "surrogatepass"))  # as json.loads(bytes)
        return json.loads(body) if body else None
    except RecursionError:
        raise ResponseParseError(
            "the body is nested too deeply to decode", where=where, excerpt=excerpt(body)
        ) from None


def parse_envelope(status: int, headers: Mapping[str, str], body: bytes, *, where: str) -> Any:
    """Return the ``data`` of a successful answer, or raise the matching error.

    Besides Kling's envelope, a gateway's bare task (new-api answers a create with the task
    object itself, no envelope) is returned as it is.

    Raises:
        APIError: (a subclass chosen by code and status) when the server reports an error.
        ResponseParseError: when the answer is not one of the known shapes.
    """
    if 300 <= status < 400:
        raise _not_the_api(status, headers, body, where)  # whatever its body says
    try:
        payload = _decode(body, where=where)
    except (ValueError, UnicodeDecodeError):
        payload = None
        if status < 400:
            # A 200 web page may be a proxy's passing glitch (so it is retried like one), or
            # a base_url that is not the API's: the message says so.
            what = "an HTML page, not JSON (is base_url the API's?)"
            raise ResponseParseError(
                f"the body is {what if _is_html(headers, body) else 'not JSON'}",
                where=where,
                excerpt=excerpt(body),
            ) from None
    if not isinstance(payload, dict):
        if status >= 400:
            raise error_for_response(
                status=status,
                code=None,
                message=f"HTTP {status} with a non-JSON body: {excerpt(body)!r}",
                retry_after=parse_retry_after(headers),
            )
        raise ResponseParseError("expected a JSON object", where=where, excerpt=excerpt(body))
    code = payload.get("code")
    if code == 0 and type(code) is int and status < 400 and "error" not in payload:
        # Kling's success, as nearly every answer is: nothing for error_from to find.
        if "data" in payload:
            return payload["data"]
    else:
        error = error_from(payload, status, headers)
        if error is not None:
            raise error
    if "data" not in payload:
        if dialects.is_bare_task(payload):
            return payload
        raise ResponseParseError(
            "the envelope has no 'data' field", where=where, excerpt=excerpt(body)
        )
    return payload["data"]


def _is_html(headers: Mapping[str, str], body: bytes) -> bool:
    content_type = headers.get("content-type") or headers.get("Content-Type") or ""
    return content_type.lower().startswith("text/html") or body.lstrip()[:1] == b"<"


def _not_the_api(status: int, headers: Mapping[str, str], body: bytes, where: str) -> APIError:
    """A redirect where the API's JSON belongs: the request never reached the API.

    CometAPI answers a wrong path with a 301 (kling-api.md §2.5), and the client follows no
    redirect of the API (it would re-send a create, or the key, elsewhere). Nothing was
    created, and asking again gets the same answer: a final error, not an unreadable answer
    (which a create would have to treat as "maybe created").
    """
    location = headers.get("location") or headers.get("Location")
    # Only scheme, host and path: a query could carry a token.
    what = f"a redirect to {location.split('?', 1)[0]}" if location else "a redirect"
    return error_for_response(
        status=status,
        code=None,
        message=(
            f"{where}: HTTP {status} with {what} instead of the API's JSON; the request did not "
            f"reach the API (check base_url and the path). Body starts: {excerpt(body)!r}"
        ),
    )


def error_from(
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
