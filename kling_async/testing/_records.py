"""What the emulator saw and did, kept for tests to inspect."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

import attrs

from ._config import RouteKind

__all__ = ["CallbackRecord", "RequestRecord", "ServerStats"]


@attrs.frozen
class RequestRecord:
    """One request received by the API or the CDN site."""

    site: Literal["api", "cdn"]
    """Which listening site got it."""
    method: str
    """HTTP method."""
    path: str
    """Path without the query string."""
    query: dict[str, str]
    """Query parameters (last value wins)."""
    headers: dict[str, str]
    """Request headers (last value wins; names as sent)."""
    route: RouteKind
    """How it was classified."""

    def header(self, name: str) -> str | None:
        """The value of header *name*, matched case-insensitively."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


@attrs.frozen
class CallbackRecord:
    """One callback the emulator tried (or chose not) to deliver."""

    url: str
    """Target URL."""
    payload: dict[str, Any]
    """JSON body."""
    status: int | None = None
    """HTTP status the receiver answered, if it answered."""
    error: str | None = None
    """Why delivery failed or was refused."""
    dropped: bool = False
    """Deliberately not sent (``callback_drop_rate``)."""


@attrs.define
class ServerStats:
    """Counters; every field is a ``collections.Counter``."""

    routes: Counter[RouteKind] = attrs.Factory(Counter)
    """Requests by route kind (``create``, ``query``, ``list``, ``video``, ``other``)."""
    codes: Counter[int] = attrs.Factory(Counter)
    """Kling body codes answered (0, 1201, 1302, 1303, 5000, ...)."""
    http_statuses: Counter[int] = attrs.Factory(Counter)
    """HTTP statuses answered (drops are not counted here)."""
    faults: Counter[str] = attrs.Factory(Counter)
    """Injected faults by kind."""
    cdn_auth_rejections: Counter[str] = attrs.Factory(Counter)
    """CDN requests that carried an ``Authorization`` header, by path."""

    @property
    def server_errors(self) -> int:
        """Number of answers with an HTTP 5xx status."""
        return sum(n for status, n in self.http_statuses.items() if status >= 500)
