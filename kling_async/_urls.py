"""What counts as a downloadable URL in a task answer (an ``http://`` or ``https://`` one), and
how a callback URL is shown without its secret token."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "HIDDEN",
    "TOKEN_PARAM",
    "hide_token",
    "http_url",
    "is_http_url",
    "journal_json",
    "same_request_json",
]

TOKEN_PARAM = "token"  # noqa: S105 - the name of a query parameter, not a secret
"""The query parameter of a callback URL that carries the receiver's secret token."""

HIDDEN = "<redacted>"
"""What a hidden token is replaced with."""

# The value ends where a query value does, or at a quote or space (a URL inside JSON or text).
_TOKEN_VALUE = re.compile(rf"([?&;]{TOKEN_PARAM}=)[^&;#\"'\s]*")


def hide_token(url: str) -> str:
    """*url* with its callback token replaced: what reprs show and journals keep.

    Examples:
        >>> hide_token("https://example.com/hook?a=1&token=s3cret")
        'https://example.com/hook?a=1&token=<redacted>'
    """
    return _TOKEN_VALUE.sub(rf"\g<1>{HIDDEN}", url) if TOKEN_PARAM in url else url


_SCHEMES = ("https://", "http://")


def http_url(value: object) -> str | None:
    """*value* when it is text starting with an http(s) scheme, else ``None``."""
    if isinstance(value, str) and value.startswith(_SCHEMES):
        return value
    return None


def is_http_url(url: str) -> bool:
    """Whether *url* is an http(s) URL with something after the scheme."""
    return http_url(url) is not None and len(url) > len("https://")


def journal_json(body: dict[str, Any]) -> str:
    """A create *body* as a journal keeps it: canonical JSON, the callback URL's token hidden.

    Only the callback URL's: a signed image URL with a ``token=`` of its own is part of the
    request. A journal is a file, and the token a secret; the requests themselves always come
    from the caller, never from the journal.
    """
    callback = body.get("callback_url")
    if isinstance(callback, str):
        body = {**body, "callback_url": hide_token(callback)}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def same_request_json(stored: str, given: str) -> bool:
    """Whether a journal's *stored* request JSON is the *given* one (from ``journal_json``).

    A journal written before callback tokens were hidden holds the plain token in its
    ``callback_url``: that alone is no change of input.
    """
    if stored == given:
        return True
    try:
        body = json.loads(stored)
    except ValueError:
        return False
    return isinstance(body, dict) and journal_json(body) == given
