"""What counts as a downloadable URL in a task answer: an ``http://`` or ``https://`` one."""

from __future__ import annotations

__all__ = ["http_url", "is_http_url"]

_SCHEMES = ("https://", "http://")


def http_url(value: object) -> str | None:
    """*value* when it is text starting with an http(s) scheme, else ``None``."""
    if isinstance(value, str) and value.startswith(_SCHEMES):
        return value
    return None


def is_http_url(url: str) -> bool:
    """Whether *url* is an http(s) URL with something after the scheme."""
    return http_url(url) is not None and len(url) > len("https://")
