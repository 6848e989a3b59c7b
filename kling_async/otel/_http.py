"""Attributes of one API request, following the HTTP client semantic conventions.

Only the method, the URL without its query string, the route template and the answer's status
are recorded: never a header (the key travels in ``Authorization``) and never a body (the prompt
and the callback URL with its token travel there).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from kling_async.errors import APIError
from kling_async.events import RequestCompleted
from kling_async.kinds import KINDS

from . import _names as n

__all__ = [
    "AttributeValue",
    "RequestAttributes",
    "request_attributes",
    "split_path",
    "throttle_reason",
]

AttributeValue = str | int | float | bool


def split_path(path: str) -> tuple[str, str | None]:
    """Return the route template of *path* and the task id in it, if any.

    Examples:
        >>> split_path("videos/text2video/8675309")
        ('videos/text2video/{task_id}', '8675309')
        >>> split_path("videos/image2video")
        ('videos/image2video', None)
    """
    for kind in KINDS.values():
        if path == kind.path:
            return path, None
        prefix = kind.path + "/"
        if path.startswith(prefix):
            return prefix + "{task_id}", path[len(prefix) :]
    return path, None


def _error_type(event: RequestCompleted) -> str | None:
    error = event.error
    if error is None:
        return None
    # The conventions ask for the status code when there is one, else the error's type.
    status = event.status
    return str(status) if status is not None and status >= 400 else type(error).__name__


def request_attributes(event: RequestCompleted, template: str) -> dict[str, AttributeValue]:
    """The attributes a request's span and its duration metric share.

    Args:
        event: the finished request.
        template: its route template (``split_path``).
    """
    parts = urlsplit(event.url)
    attributes: dict[str, AttributeValue] = {
        n.ATTR_METHOD: event.method,
        n.ATTR_URL_TEMPLATE: template,
        n.ATTR_SERVER_ADDRESS: parts.hostname or "",
        n.ATTR_SERVER_PORT: parts.port or (443 if parts.scheme == "https" else 80),
    }
    if event.status is not None:
        attributes[n.ATTR_STATUS_CODE] = event.status
    error_type = _error_type(event)
    if error_type is not None:
        attributes[n.ATTR_ERROR_TYPE] = error_type
    return attributes


class RequestAttributes:
    """``request_attributes``, made once per distinct combination and then reused.

    A client sends thousands of status checks with the same few combinations of method, route,
    host, status and error; building and parsing them once per request is measurable.

    Args:
        max_size: combinations kept (a guard: real clients have a handful).
    """

    def __init__(self, max_size: int = 1024) -> None:
        self._cache: dict[tuple[object, ...], dict[str, AttributeValue]] = {}
        self._max_size = max_size

    def __call__(self, event: RequestCompleted, template: str) -> dict[str, AttributeValue]:
        """The shared attributes of *event*; do not modify the returned mapping."""
        origin = event.url.removesuffix(event.path)
        key = (event.method, template, origin, event.status, _error_type(event))
        found = self._cache.get(key)
        if found is None:
            found = request_attributes(event, template)
            if len(self._cache) < self._max_size:
                self._cache[key] = found
        return found


def throttle_reason(event: RequestCompleted) -> str | None:
    """``"1302"``, ``"1303"`` or ``"429"`` when the answer said slow down; else ``None``."""
    error = event.error
    code = error.code if isinstance(error, APIError) else None
    if code in (1302, 1303):
        return str(code)
    if event.status == 429:
        return "429"
    return None
