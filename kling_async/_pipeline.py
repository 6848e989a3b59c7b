"""The request pipeline: limiter -> auth -> transport -> wire, with retries and re-signing.

Every API request of a [`KlingClient`][kling_async.client.KlingClient] goes through one
[`RequestPipeline`][kling_async._pipeline.RequestPipeline]: it waits for the rate limiter, signs
the request, sends it, reads the envelope, reports the outcome to the limiter, and retries
transient failures through [`RetryPolicy.attempts`][kling_async.retry.RetryPolicy.attempts]. It
knows nothing of tasks, slots or callbacks: those are the create protocol's and the facade's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from . import wire
from .auth import Auth
from .clock import Clock
from .errors import (
    APIConnectionError,
    APIError,
    ConcurrencyLimitError,
    ConfigurationError,
    RateLimitError,
    ResponseParseError,
)
from .events import Event, EventHub, RequestCompleted, Retrying
from .limiter import RateLimiter
from .providers import Provider
from .retry import RetryPolicy, needs_new_token
from .transport import Transport

__all__ = ["RequestPipeline"]

logger = logging.getLogger("kling_async.client")

_FAILURES = (APIError, APIConnectionError, ResponseParseError)


class RequestPipeline:
    """Send API requests for one client (strictly private: use ``KlingClient``).

    Args:
        provider: where requests go (its ``url`` builds each request's URL).
        auth: signs requests; re-signed once when the server calls a JWT expired.
        transport: sends the bytes.
        limiter: spaces requests; ``None`` sends them unpaced (no per-request awaits).
        retry: the retry policy for transient failures.
        clock: where back-off waits happen.
        events: the client's event hub (nothing is built when nobody listens).
        timeout: seconds allowed for each HTTP request.
    """

    __slots__ = (
        "_auth",
        "_emit",
        "_events",
        "_headers",
        "_limiter",
        "_transport",
        "clock",
        "closed",
        "provider",
        "retry",
        "timeout",
    )

    def __init__(
        self,
        *,
        provider: Provider,
        auth: Auth,
        transport: Transport,
        limiter: RateLimiter | None,
        retry: RetryPolicy,
        clock: Clock,
        events: EventHub,
        emit: Callable[[Event], None],
        timeout: float,
    ) -> None:
        self.provider = provider
        self.retry = retry
        self.clock = clock
        self.timeout = timeout
        self.closed = False
        self._auth = auth
        self._transport = transport
        self._limiter = limiter
        self._events = events
        self._emit = emit
        # Shared by every request and never mutated: the transport reads it, aiohttp copies it.
        self._headers: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        """The request headers, rebuilt only when the Authorization value changes (a new JWT)."""
        authorization = self._auth.header()
        if self._headers.get("Authorization") != authorization:
            self._headers = {"Authorization": authorization, "Accept": "application/json"}
        return self._headers

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        retry: bool = True,
        standard: bool = False,
    ) -> Any:
        """Send one API request and return its ``data``, retrying transient failures if *retry*.

        *path* is below the provider's prefix, or below its new-standard prefix if *standard*.

        Raises:
            ConfigurationError: the client is closed.
            APIError: the server's definite answer (after retries, for transient ones).
            APIConnectionError: no answer came (after retries).
            ResponseParseError: the answer could not be read (after retries).
        """
        if self.closed:
            raise ConfigurationError("this client is closed; create a new KlingClient")
        where = f"{method} {path}"
        url = self.provider.standard_url(path) if standard else self.provider.url(path)
        policy = self.retry

        def should_retry(error: BaseException, retries: int) -> bool:
            return retry and isinstance(error, _FAILURES) and policy.should_retry(error, retries)

        def on_retry(error: BaseException, attempt: int, delay: float) -> None:
            logger.info(
                "%s failed (%s); retry %d in %.2fs", where, type(error).__name__, attempt, delay
            )
            self._emit(Retrying(operation=where, attempt=attempt, delay=delay, error=error))

        async for attempt in policy.attempts(
            self.clock, should_retry=should_retry, on_retry=on_retry
        ):
            with attempt:
                try:
                    return await self._send(method, path, url, json, params, attempt.retries_done)
                except RateLimitError as exc:
                    if (
                        self._limiter is not None
                        and not isinstance(exc, ConcurrencyLimitError)
                        and await self._limiter.on_rate_limited(exc.retry_after)
                    ):
                        # One shared cool-down for every coroutine instead of N private
                        # back-offs: the limiter already holds the next attempt back.
                        attempt.skip_wait()
                    raise
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    async def _send(
        self,
        method: str,
        path: str,
        url: str,
        json: Any,
        params: Mapping[str, str] | None,
        retries: int,
    ) -> Any:
        """One attempt, re-signed and sent again at once if the server calls the JWT expired."""
        limiter = self._limiter
        # Nobody listening: no clock reads, no event objects (the instrumentation's "off" cost).
        observed = bool(self._events)
        resigned = False
        while True:
            if limiter is not None:
                await limiter.acquire()
            status: int | None = None
            sent_at = self.clock.now() if observed else 0.0
            try:
                raw = await self._transport.request(
                    method,
                    url,
                    headers=self.headers(),
                    json=json,
                    params=params,
                    timeout=self.timeout,
                )
                status = raw.status
                data = wire.parse_envelope(
                    raw.status, raw.headers, raw.body, where=f"{method} {path}"
                )
            except _FAILURES as exc:
                if observed:
                    self._emit(
                        RequestCompleted(
                            method, path, url, self.clock.now() - sent_at, status, retries, exc
                        )
                    )
                if needs_new_token(exc) and not resigned:
                    self._auth.invalidate()
                    resigned = True
                    continue
                raise
            if limiter is not None:
                await limiter.on_success()
            if observed:
                self._emit(
                    RequestCompleted(method, path, url, self.clock.now() - sent_at, status, retries)
                )
            return data

    async def aclose(self) -> None:
        """Close the transport (the connection pool)."""
        self.closed = True
        await self._transport.aclose()
