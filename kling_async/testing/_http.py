"""Small HTTP helpers of the emulator: replies, the rate limiter, ranges, dropped connections."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

__all__ = [
    "FAULT_ERRORS",
    "LOCAL_HOSTS",
    "JsonReply",
    "TokenBucket",
    "drop_connection",
    "is_local_url",
    "parse_range",
]

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
"""Hosts the emulator binds to and posts callbacks to: never anything off the machine."""

FAULT_ERRORS: Mapping[str, tuple[int, int, str]] = {
    "500": (500, 5000, "Server internal error"),
    "503": (503, 5001, "Server temporarily unavailable, usually due to maintenance"),
    "504": (504, 5002, "Server internal timeout, usually due to a backlog"),
}
"""HTTP status, Kling code and message of the error faults (kling-api.md §6)."""


class JsonReply(web.Response):
    """A JSON answer that remembers its Kling body code, for the statistics."""

    def __init__(
        self,
        status: int,
        body: Mapping[str, Any],
        code: int,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            status=status,
            text=json.dumps(body),
            content_type="application/json",
            headers=headers,
        )
        self.kling_code = code


class TokenBucket:
    """Request-rate limiter on the server clock."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def take(self, now: float) -> float | None:
        """Spend one token; return ``None``, or the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


def is_local_url(url: str) -> bool:
    """Whether *url* is http(s) on a loopback host."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host in LOCAL_HOSTS


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse one ``bytes=N-``, ``bytes=N-M`` or ``bytes=-K`` range; ``None`` if unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if not first:
            suffix = int(last)
            if suffix <= 0:
                return None
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or start >= size or end < start:
        return None
    return start, min(end, size - 1)


async def drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the connection without answering; return a response aiohttp will fail to send."""
    # Drain the body first so the kernel sends a clean FIN rather than a reset.
    await request.read()
    transport = request.transport
    if transport is not None:
        transport.close()
    # Writing to the closing transport raises ConnectionError, which aiohttp ignores quietly.
    return web.Response(status=599)
