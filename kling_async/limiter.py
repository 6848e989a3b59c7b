"""One request-rate limit shared by every coroutine of a client.

[`TokenBucketLimiter`][kling_async.limiter.TokenBucketLimiter] is a token bucket that also reacts to the server: a "too many
requests" answer (HTTP 429, Kling code 1302) seen by *any* coroutine pauses *all* of them for one
shared cool-down, and halves the rate (AIMD: additive increase, multiplicative decrease). Later
successes raise the rate again, slowly, up to the configured one.

Everything talks to the limiter through the small [`RateLimiter`][kling_async.limiter.RateLimiter] protocol, so a limiter
shared between processes (Redis, say) can replace it without touching the client.

Examples:
    >>> import anyio
    >>> from kling_async.testing.clock import FakeClock
    >>> async def main() -> float:
    ...     clock = FakeClock()
    ...     limiter = TokenBucketLimiter(RateLimit(per_second=2, burst=1), clock=clock)
    ...     async with clock.autojump():
    ...         for _ in range(5):
    ...             await limiter.acquire()
    ...     return clock.now()
    >>> anyio.run(main)  # the first is free, then one every half second
    2.0
"""

from __future__ import annotations

import logging
from typing import Protocol

import anyio
import anyio.lowlevel
import attrs

from ._ratemath import Aimd
from .clock import Clock, SystemClock
from .errors import ConfigurationError
from .events import EventSink, LimiterWaited, RateLimited, emit

__all__ = [
    "LimiterStats",
    "RateLimit",
    "RateLimiter",
    "TokenBucketLimiter",
    "UnlimitedLimiter",
]

_log = logging.getLogger("kling_async.limiter")

# Float refills drift by a few ulps; without the slack a waiter could wake a hair before its token
# is whole and sleep again for ~1e-16 s.
_EPSILON = 1e-9


def _check_rate(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"RateLimit.{attribute.name} must be > 0, got {value!r}")


def _check_burst(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"RateLimit.{attribute.name} must be an integer >= 1, got {value!r}"
        )


@attrs.frozen
class RateLimit:
    """A request rate: *per_second* on average, up to *burst* at once.

    Attributes:
        per_second: requests per second in the long run (> 0; ``0.5`` is one every two seconds).
        burst: how many requests may go out back to back after a quiet spell (>= 1).

    Raises:
        ConfigurationError: a value is out of range.
    """

    per_second: float = attrs.field(validator=_check_rate)
    burst: int = attrs.field(default=1, validator=_check_burst)


@attrs.frozen
class LimiterStats:
    """Counters of a [`TokenBucketLimiter`][kling_async.limiter.TokenBucketLimiter], as a snapshot.

    Attributes:
        acquired: permissions granted.
        waited: permissions that were not granted at once (the caller had to wait).
        cooldowns: shared cool-downs started by rate-limited reports.
        decreases: times the rate was lowered.
    """

    acquired: int = 0
    waited: int = 0
    cooldowns: int = 0
    decreases: int = 0


class RateLimiter(Protocol):
    """What the client needs from a rate limiter."""

    async def acquire(self) -> None:
        """Wait for permission to send one request."""
        ...

    async def on_rate_limited(self, retry_after: float | None = None) -> bool:
        """Report that the server answered "too many requests" (HTTP 429 or code 1302).

        Args:
            retry_after: the delay the server asked for, in seconds, if it gave one.

        Returns:
            ``True`` when the limiter's shared cool-down now spaces the retry (the caller then
            retries at once, through [`acquire`][kling_async.limiter.RateLimiter.acquire]); ``False`` when the caller must back off
            on its own.
        """
        ...

    async def on_success(self) -> None:
        """Report that a request succeeded (lets the limiter recover its rate)."""
        ...


class UnlimitedLimiter:
    """A [`RateLimiter`][kling_async.limiter.RateLimiter] that never waits and ignores every report."""

    async def acquire(self) -> None:
        """Return at once.

        No checkpoint: the request that follows is one, and an extra trip through the event
        loop per request costs a measurable share of status-check throughput.
        """

    async def on_rate_limited(self, retry_after: float | None = None) -> bool:
        """Ignore the report: without pacing, each request backs off on its own.

        Args:
            retry_after: ignored.

        Returns:
            ``False``, always.
        """
        return False

    async def on_success(self) -> None:
        """Ignore the report."""

    def __repr__(self) -> str:
        return "UnlimitedLimiter()"


class TokenBucketLimiter:
    """A token bucket with a shared cool-down and AIMD rate adaptation.

    * **Bucket.** Holds up to ``limit.burst`` tokens and refills at the current rate; each
      [`acquire`][kling_async.limiter.TokenBucketLimiter.acquire] takes one token. In any window of length *T* at most
      ``burst + per_second * T`` acquisitions succeed.
    * **Fairness.** Waiters are served strictly first come, first served: one lock, held by the
      waiter at the head of the queue while it sleeps for its token.
    * **Shared cool-down.** [`on_rate_limited`][kling_async.limiter.TokenBucketLimiter.on_rate_limited] pauses every acquirer until
      ``now + (retry_after or cooldown)``. Reports that arrive while a cool-down is running only
      extend it to the latest end; they do not stack. When the pause ends the bucket holds at most
      one token, so one request probes the server before the (lowered) rate applies.
    * **AIMD.** The first report of a cool-down halves the rate, never below
      ``min_rate_fraction * per_second``. Each [`on_success`][kling_async.limiter.TokenBucketLimiter.on_success] outside a cool-down adds
      ``recovery_per_success`` requests/second back, up to ``per_second``. With the default
      (``per_second / 50``), recovering from one halving takes 25 successful requests.

    The limiter never sleeps on wall time itself: it uses the [`Clock`][kling_async.clock.Clock]
    it was given. A waiter already sleeping for its token notices a rate change only when it
    wakes up (it then re-checks the pause and the rate).
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Clock | None = None,
        cooldown: float = 1.0,
        min_rate_fraction: float = 0.1,
        recovery_per_success: float | None = None,
        events: EventSink | None = None,
    ) -> None:
        """Create a limiter.

        Args:
            limit: the configured (maximum) rate and burst.
            clock: the time source; [`SystemClock`][kling_async.clock.SystemClock] when omitted.
            cooldown: seconds to pause after a rate-limited report that carries no Retry-After.
            min_rate_fraction: the floor for AIMD decreases, as a fraction of
                ``limit.per_second`` (in ``(0, 1]``).
            recovery_per_success: requests/second added back per successful request;
                ``limit.per_second / 50`` when omitted.
            events: receives a [`RateLimited`][kling_async.events.RateLimited] event per cool-down and
                a [`LimiterWaited`][kling_async.events.LimiterWaited] event per caller that had to wait.

        Raises:
            ConfigurationError: a parameter is out of range.
        """
        if cooldown < 0:
            raise ConfigurationError(f"cooldown must be >= 0, got {cooldown!r}")
        if not 0 < min_rate_fraction <= 1:
            raise ConfigurationError(
                f"min_rate_fraction must be in (0, 1], got {min_rate_fraction!r}"
            )
        if recovery_per_success is not None and recovery_per_success < 0:
            raise ConfigurationError(
                f"recovery_per_success must be >= 0, got {recovery_per_success!r}"
            )
        self._limit = limit
        self._clock: Clock = clock if clock is not None else SystemClock()
        # The same AIMD arithmetic as the Redis limiter's.
        self._aimd = Aimd.of(
            limit.per_second,
            cooldown=cooldown,
            min_rate_fraction=min_rate_fraction,
            recovery_per_success=recovery_per_success,
        )
        self._events = events
        self._rate = limit.per_second
        self._tokens = float(limit.burst)
        self._refilled_at = self._clock.now()
        self._paused_until = float("-inf")
        # anyio's Lock wakes waiters in FIFO order: that is the whole fairness mechanism.
        self._lock = anyio.Lock()
        self._acquired = 0
        self._waited = 0
        self._cooldowns = 0
        self._decreases = 0

    def __repr__(self) -> str:
        return (
            f"TokenBucketLimiter(limit={self._limit!r}, rate={self._rate:.4g}, "
            f"tokens={self._tokens:.3g}, paused_until={self._paused_until:.4g}, "
            f"waiting={self._lock.statistics().tasks_waiting})"
        )

    @property
    def limit(self) -> RateLimit:
        """The configured rate and burst."""
        return self._limit

    @property
    def current_rate(self) -> float:
        """The rate in use now (requests per second), lowered after rate-limited reports."""
        return self._rate

    @property
    def paused_until(self) -> float:
        """Clock time at which the current cool-down ends (in the past when not paused)."""
        return self._paused_until

    @property
    def stats(self) -> LimiterStats:
        """A snapshot of the counters."""
        return LimiterStats(
            acquired=self._acquired,
            waited=self._waited,
            cooldowns=self._cooldowns,
            decreases=self._decreases,
        )

    async def acquire(self) -> None:
        """Wait for permission to send one request.

        Cancelling a waiting caller gives up its place in the queue and consumes no token.
        """
        # When waiting began; read from the clock only by callers that do wait.
        since = self._clock.now() if self._lock.locked() else None
        async with self._lock:
            while True:
                now = self._clock.now()
                if now < self._paused_until:
                    since = now if since is None else since
                    await self._clock.sleep(self._paused_until - now)
                    continue
                self._refill(now)
                if self._tokens >= 1 - _EPSILON:
                    self._tokens = max(0.0, self._tokens - 1)
                    break
                since = now if since is None else since
                # The rate or the pause may change while we sleep: the loop re-checks both.
                await self._clock.sleep((1 - self._tokens) / self._rate)
        self._acquired += 1
        if since is not None:
            self._waited += 1
            emit(self._events, LimiterWaited(waited=self._clock.now() - since))
        else:
            await anyio.lowlevel.checkpoint()

    async def on_rate_limited(self, retry_after: float | None = None) -> bool:
        """Pause every acquirer and, once per cool-down, halve the rate.

        Args:
            retry_after: the delay the server asked for, in seconds; *cooldown* when ``None``.

        Returns:
            ``True``: the cool-down spaces the caller's retry.
        """
        now = self._clock.now()
        delay = self._aimd.pause(retry_after)
        until = now + delay
        if now < self._paused_until:
            # Answers to requests that were already in flight: the same event, seen again.
            self._paused_until = max(self._paused_until, until)
            return True
        self._refill(now)
        self._paused_until = until
        self._tokens = min(self._tokens, 1.0)
        self._cooldowns += 1
        lowered = max(self._aimd.floor, self._rate * 0.5)
        if lowered < self._rate:
            self._rate = lowered
            self._decreases += 1
            _log.warning(
                "rate limited by the server: pausing %.3g s, lowering the rate to %.3g/s",
                delay,
                lowered,
            )
        else:
            _log.warning(
                "rate limited by the server: pausing %.3g s (rate already at its floor %.3g/s)",
                delay,
                self._rate,
            )
        emit(self._events, RateLimited(delay=delay, rate=self._rate))
        return True

    async def on_success(self) -> None:
        """Raise the rate a little towards the configured one (ignored during a cool-down)."""
        if self._rate >= self._limit.per_second:
            return
        now = self._clock.now()
        if now < self._paused_until:
            return
        self._refill(now)
        self._rate = min(self._limit.per_second, self._rate + self._aimd.recovery)
        if self._rate >= self._limit.per_second:
            _log.info("request rate recovered to %.3g/s", self._rate)

    def _refill(self, now: float) -> None:
        # Tokens do not accumulate during a cool-down: the server asked for silence, not a burst.
        start = max(self._refilled_at, self._paused_until)
        if now > start:
            self._tokens = min(float(self._limit.burst), self._tokens + (now - start) * self._rate)
        self._refilled_at = max(self._refilled_at, now)
