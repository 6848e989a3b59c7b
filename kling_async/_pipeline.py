"""The request pipeline: limiter -> auth -> transport -> wire, with retries and re-signing.

Every API request of a [`KlingClient`][kling_async.client.KlingClient] goes through one
[`RequestPipeline`][kling_async._pipeline.RequestPipeline]: it waits for the rate limiter, signs
the request, sends it, reads the envelope, reports the outcome to the limiter, and retries
transient failures through [`RetryPolicy.attempts`][kling_async.retry.RetryPolicy.attempts]. It
knows nothing of tasks, slots or callbacks: those are the create protocol's and the facade's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeAlias

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

__all__ = ["UNCHANGED", "Read", "RequestPipeline"]

logger = logging.getLogger("kling_async.client")

_FAILURES = (APIError, APIConnectionError, ResponseParseError)


UNCHANGED: Any = object()
"""The ``data`` of a [`Read`][kling_async._pipeline.Read] whose answer is byte-identical to the
known one (it was not decoded)."""

Read: TypeAlias = tuple[Any, bytes]
"""A status answer read with [`RequestPipeline.read`][kling_async._pipeline.RequestPipeline.read]:
its ``data`` (or [`UNCHANGED`][kling_async._pipeline.UNCHANGED]) and the answer body's
[`fingerprint`][kling_async.wire.fingerprint]. A plain tuple: one is made per status check, and
a named one costs several times as much to make."""


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
        "_root",
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
        # Every status check's URL starts with this: built once, not per check.
        self._root = provider.url("")
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

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        retry: bool = True,
        standard: bool = False,
    ) -> Coroutine[Any, Any, Any]:
        """Send one API request and return its ``data``, retrying transient failures if *retry*.

        *path* is below the provider's prefix, or below its new-standard prefix if *standard*.

        Raises:
            ConfigurationError: the client is closed.
            APIError: the server's definite answer (after retries, for transient ones).
            APIConnectionError: no answer came (after retries).
            ResponseParseError: the answer could not be read (after retries).
        """
        url = self.provider.standard_url(path) if standard else self.provider.url(path)
        # Not a coroutine itself: every frame between a check and the socket is resumed at each
        # of aiohttp's suspensions, so the hot path keeps no frame it does not need.
        return self._send(method, path, url, json, params, retry, None)

    def read(self, path: str, *, known: bytes | None) -> Coroutine[Any, Any, Read]:
        """``GET`` *path* (a task's status) and fingerprint the answer.

        The answer is decoded only when its fingerprint differs from *known* (the one of the
        answer the caller's task came from): most status checks repeat the last answer byte
        for byte. Retries and errors as in [`call`][kling_async._pipeline.RequestPipeline.call].
        """
        answer: Coroutine[Any, Any, Read] = self._send(
            "GET", path, self._root + path.lstrip("/"), None, None, True, known or b""
        )
        return answer

    async def _send(
        self,
        method: str,
        path: str,
        url: str,
        json: Any,
        params: Mapping[str, str] | None,
        retry: bool,
        known: bytes | None,
        retries: int = 0,
    ) -> Any:
        """One attempt, re-signed and sent again at once if the server calls the JWT expired.

        The first attempt (*retries* 0) hands a failure to ``_retried``, which owns the one
        retry loop: almost every request succeeds at once, and a frame between a check and the
        socket is resumed at each of aiohttp's suspensions. With *known* (``b""`` for none
        yet) the answer is a [`Read`][kling_async._pipeline.Read].
        """
        if self.closed and not retries:  # a retry already under way is let finish
            raise ConfigurationError("this client is closed; create a new KlingClient")
        limiter = self._limiter
        # Nobody listening: no clock reads, no event objects (the instrumentation's "off" cost).
        # The hub's sinks directly: its own truth is a Python __len__ call, once per request.
        observed = bool(self._events._sinks)
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
                if known is None:
                    data = wire.parse_envelope(
                        status, raw.headers, raw.body, where=f"{method} {path}"
                    )
                else:
                    digest = wire.fingerprint(raw.body)
                    if status == 200 and digest == known:
                        # Byte-identical to an answer that was read fine: it reads the same.
                        data = (UNCHANGED, digest)
                    else:
                        where = f"{method} {path}"
                        data = (
                            wire.parse_envelope(status, raw.headers, raw.body, where=where),
                            digest,
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
                if retries:
                    raise  # an attempt of _retried's loop: the loop decides
                waits = await self._limiter_waits(exc)
                if not (retry and self.retry.should_retry(exc, 0)):
                    # A bare raise, here: raising it from elsewhere would chain whatever the
                    # caller is handling to an error the transport left unchained.
                    raise
                failure = exc
                break
            if limiter is not None:
                await limiter.on_success()
            if observed:
                self._emit(
                    RequestCompleted(method, path, url, self.clock.now() - sent_at, status, retries)
                )
            return data
        return await self._retried(method, path, url, json, params, known, failure, waits)

    async def _retried(
        self,
        method: str,
        path: str,
        url: str,
        json: Any,
        params: Mapping[str, str] | None,
        known: bytes | None,
        first: Exception,
        waits: bool,
    ) -> Any:
        """Retry a request whose first attempt failed with *first*, while the policy allows.

        *waits*: the limiter holds the next try back after *first* (a rate-limit answer).
        """
        where = f"{method} {path}"
        policy = self.retry

        def should_retry(error: BaseException, retries: int) -> bool:
            return isinstance(error, _FAILURES) and policy.should_retry(error, retries)

        def on_retry(error: BaseException, attempt: int, delay: float) -> None:
            logger.info(
                "%s failed (%s); retry %d in %.2fs", where, type(error).__name__, attempt, delay
            )
            self._emit(Retrying(operation=where, attempt=attempt, delay=delay, error=error))

        async for attempt in policy.attempts(
            self.clock,
            should_retry=should_retry,
            on_retry=on_retry,
            after=(first, waits),
        ):
            with attempt:
                try:
                    return await self._send(
                        method, path, url, json, params, True, known, attempt.retries_done
                    )
                except _FAILURES as error:
                    if await self._limiter_waits(error):
                        attempt.skip_wait()
                    raise
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    async def _limiter_waits(self, error: BaseException) -> bool:
        """Report a rate-limit answer to the limiter; ``True`` if it now holds the next try back.

        One shared cool-down for every coroutine instead of N private back-offs.
        """
        return (
            isinstance(error, RateLimitError)
            and not isinstance(error, ConcurrencyLimitError)
            and self._limiter is not None
            and await self._limiter.on_rate_limited(error.retry_after)
        )

    async def aclose(self) -> None:
        """Close the transport (the connection pool)."""
        self.closed = True
        await self._transport.aclose()
