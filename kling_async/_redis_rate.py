"""The request rate shared by every process of one account, on Redis (see ``redis_store``)."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import anyio.lowlevel

from . import _redis_scripts as scripts
from ._ratemath import Aimd
from .clock import Clock
from .errors import StoreUnavailableError
from .events import EventSink, RateLimited, emit
from .limiter import RateLimit, TokenBucketLimiter

if TYPE_CHECKING:
    from .redis_store import RedisStore

__all__ = ["RedisRateLimiter"]

# One logger for the whole store: operators filter on the public module's name.
_log = logging.getLogger("kling_async.redis_store")


class RedisRateLimiter:
    """A [`RateLimiter`][kling_async.limiter.RateLimiter] shared through Redis (see the module docs).

    Made by [`RedisStore.rate_limiter`][kling_async.redis_store.RedisStore.rate_limiter]; ``KlingClient(shared=...)`` makes one.
    """

    def __init__(
        self,
        store: RedisStore,
        limit: RateLimit,
        *,
        clock: Clock,
        events: EventSink | None = None,
        cooldown: float = 1.0,
        min_rate_fraction: float = 0.1,
        recovery_per_success: float | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        """Create a limiter on *store*.

        Args:
            store: the Redis store.
            limit: the account's rate and burst.
            clock: for local sleeps.
            events: receives [`RateLimited`][kling_async.events.RateLimited] when this process starts
                a cool-down.
            cooldown: seconds to pause after a rate-limited report without Retry-After.
            min_rate_fraction: the AIMD floor, as a fraction of ``limit.per_second``.
            recovery_per_success: requests/second added back per success
                (``limit.per_second / 50`` when omitted).
            retry_interval: seconds between attempts to reach Redis again after a failure.
        """
        self._store = store
        self._limit = limit
        self._clock = clock
        self._events = events
        self._aimd = Aimd.of(
            limit.per_second,
            cooldown=cooldown,
            min_rate_fraction=min_rate_fraction,
            recovery_per_success=recovery_per_success,
        )
        self._retry_interval = retry_interval
        self._key = store.key("rate")
        self._rate = limit.per_second
        self._fallback = TokenBucketLimiter(
            RateLimit(per_second=limit.per_second * store.fallback_share, burst=1), clock=clock
        )
        self._down_until = -math.inf
        self.fallbacks = 0
        """Acquires that went through the local fallback bucket (Redis was away)."""

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter({self._store.where!r}, account={self._store.account!r}, "
            f"limit={self._limit!r}, rate={self._rate:.4g}, fallbacks={self.fallbacks})"
        )

    @property
    def limit(self) -> RateLimit:
        """The configured rate and burst."""
        return self._limit

    @property
    def current_rate(self) -> float:
        """The shared rate as last seen (requests per second)."""
        return self._rate

    def _reachable(self) -> bool:
        return self._clock.now() >= self._down_until

    def _went_down(self, exc: StoreUnavailableError) -> None:
        if self._reachable():
            _log.warning(
                "%s; pacing requests locally at %.3g/s until it answers",
                exc,
                self._limit.per_second * self._store.fallback_share,
            )
        self._down_until = self._clock.now() + self._retry_interval

    async def acquire(self) -> None:
        """Wait for permission to send one request (one Lua call; a second after a wait)."""
        while self._reachable():
            try:
                wait_ms, rate, paused = await self._store.run(
                    scripts.RATE_ACQUIRE,
                    [self._key],
                    [self._limit.per_second, self._limit.burst],
                )
            except StoreUnavailableError as exc:
                self._went_down(exc)
                break
            self._rate = float(rate)
            wait = float(wait_ms) / 1000
            if wait <= 0:
                await anyio.lowlevel.checkpoint()
                return
            await self._clock.sleep(wait)
            if int(paused):
                continue
            # A cool-down may have started (in any process) while this send waited its turn.
            try:
                left = float(await self._store.run(scripts.RATE_PAUSE_LEFT, [self._key], [])) / 1000
            except StoreUnavailableError:
                return  # the reservation stands; the next acquire finds out about Redis
            if left <= 0:
                return
            # Reserve again after the pause: every send that was waiting would otherwise go out
            # the moment it ends, as one burst.
            await self._clock.sleep(left)
        self.fallbacks += 1
        await self._fallback.acquire()

    async def on_rate_limited(self, retry_after: float | None = None) -> bool:
        """Start (or extend) the shared cool-down; the first report of one halves the rate.

        Args:
            retry_after: the delay the server asked for, in seconds.

        Returns:
            ``True``: the cool-down spaces the caller's retry.
        """
        delay = self._aimd.pause(retry_after)
        await self._fallback.on_rate_limited(retry_after)
        try:
            started, rate = await self._store.run(
                scripts.RATE_LIMITED,
                [self._key],
                [delay * 1000, self._aimd.floor, self._limit.per_second, self._limit.burst],
            )
        except StoreUnavailableError as exc:
            self._went_down(exc)
            return True
        self._rate = float(rate)
        if int(started):
            _log.warning(
                "rate limited by the server: every process pauses %.3g s, shared rate now %.3g/s",
                delay,
                self._rate,
            )
            emit(self._events, RateLimited(delay=delay, rate=self._rate))
        return True

    async def on_success(self) -> None:
        """Raise the shared rate a little, while it is below the configured one."""
        await self._fallback.on_success()
        if self._rate >= self._limit.per_second or not self._reachable():
            return
        try:
            rate = await self._store.run(
                scripts.RATE_SUCCESS, [self._key], [self._aimd.recovery, self._limit.per_second]
            )
        except StoreUnavailableError as exc:
            self._went_down(exc)
            return
        self._rate = float(rate)
