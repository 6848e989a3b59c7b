"""When to retry a failed request, and how long to wait first.

Reads and creates are treated differently. A read (a task query) is retried on connection errors,
timeouts, HTTP 408/429/5xx and Kling codes 1302/1303/5000-5002. A create is never retried blindly:
[`kling_async.client`][kling_async.client] first finds out whether the failed attempt created a task.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    RateLimitError,
    ResponseParseError,
    ServerError,
)

if TYPE_CHECKING:
    from .clock import Clock

__all__ = ["Attempt", "Attempts", "RetryPolicy", "parse_retry_after", "retry_after_of"]


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(f"RetryPolicy.{attribute.name} must be >= 0, got {value!r}")


def _optional_positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _positive(instance, attribute, value)


@attrs.frozen
class RetryPolicy:
    """Exponential back-off with jitter, honouring ``Retry-After``.

    The n-th retry waits ``min(cap, base * 2**n)`` scaled by a random factor in
    ``[1 - jitter, 1]``, or what ``Retry-After`` asks when the server sends it, up to
    ``max_retry_after``: a longer demand is not obeyed but raised, so callers are not parked for
    minutes without knowing. Kling asks for at least one second before retrying 1303, hence the
    one-second base.

    Attributes:
        max_retries: retries after the first attempt (0 turns retrying off).
        max_connect_retries: retries when no connection could be opened at all (refused, no
            route, unknown host): usually nothing is listening there, so the default two
            retries (about three seconds) fail fast, while timeouts, 5xx and 429 get
            *max_retries*. At most *max_retries* either way.
        base: the first delay, in seconds.
        cap: the longest computed delay.
        jitter: the fraction of randomness in each delay.
        max_retry_after: the longest ``Retry-After`` the client will honour.
        max_concurrency_wait: seconds a submission keeps re-queueing after the server's
            1303 (too many tasks in flight for the account) before the last
            [`ConcurrencyLimitError`][kling_async.errors.ConcurrencyLimitError] is raised; ``None`` (the default) waits
            until the caller cancels. A 1303 definitely created nothing, so waiting is safe;
            the cap is for callers who would rather give up.

    Examples:
        >>> RetryPolicy(jitter=0).delay(2, retry_after=None)
        4.0
    """

    max_retries: int = attrs.field(default=5, validator=_positive)
    max_connect_retries: int = attrs.field(default=2, validator=_positive)
    base: float = attrs.field(default=1.0, validator=_positive)
    cap: float = attrs.field(default=30.0, validator=_positive)
    jitter: float = attrs.field(default=0.25, validator=_positive)
    max_retry_after: float = attrs.field(default=120.0, validator=_positive)
    max_concurrency_wait: float | None = attrs.field(default=None, validator=_optional_positive)

    def delay(
        self, retries_done: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``retries_done + 1``."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        raw = min(self.cap, self.base * 2.0**retries_done)
        return raw * (1.0 - self.jitter * (rng or random).random())

    def concurrency_delay(
        self, retries_done: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before re-queueing a create after its ``retries_done + 1``-th 1303.

        As [`delay`][kling_async.retry.RetryPolicy.delay], but the jitter adds to the computed
        delay instead of taking from it: Kling recommends at least one second before the first
        retry of a 1303 (kling-api.md §6), which the default one-second ``base`` then keeps.

        Examples:
            >>> 1.0 <= RetryPolicy().concurrency_delay(0, retry_after=None) <= 1.25
            True
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        raw = min(self.cap, self.base * 2.0**retries_done)
        return raw * (1.0 + self.jitter * (rng or random).random())

    def attempts(
        self,
        clock: Clock,
        *,
        should_retry: Callable[[BaseException, int], bool] | None = None,
        on_retry: Callable[[BaseException, int, float], None] | None = None,
        after: tuple[BaseException, bool] | None = None,
    ) -> Attempts:
        """The attempts of one operation, retried by this policy on *clock*'s time.

        The one retry loop of the library: each attempt runs in a ``with attempt:`` block. A
        failure that may be retried is swallowed by the block, and the iterator waits (the
        policy's back-off, or the ``Retry-After`` the error carries) before yielding the next
        attempt; any other failure propagates. Leaving the block without an error ends the loop.

        Args:
            clock: where the waits happen (a fake clock in tests).
            should_retry: ``(error, retries_done) -> bool``; defaults to
                [`should_retry`][kling_async.retry.RetryPolicy.should_retry].
            on_retry: called with ``(error, retry_number, delay)`` before each wait (logging,
                events).
            after: ``(error, skip_wait)`` when the first try already ran and failed with a
                retryable *error*: the loop begins with the wait before the second try (with
                none if *skip_wait*).

        Examples:
            >>> import anyio
            >>> from kling_async.testing.clock import FakeClock
            >>> from kling_async.errors import ServerError
            >>> async def flaky() -> int:
            ...     clock, calls = FakeClock(), []
            ...     async with clock.autojump():
            ...         async for attempt in RetryPolicy(jitter=0).attempts(clock):
            ...             with attempt:
            ...                 calls.append(clock.now())
            ...                 if len(calls) < 3:
            ...                     raise ServerError("busy", status=503)
            ...     return calls
            >>> anyio.run(flaky)
            [0.0, 1.0, 3.0]
        """
        attempts = Attempts(self, clock, should_retry or self.should_retry, on_retry)
        if after is not None:
            # The first try already ran (outside the loop, on a hot path) and failed with
            # this error: the loop starts with its wait.
            error, skip_wait = after
            first = Attempt(attempts, 0)
            first._error = error
            first._skip_wait = skip_wait
            attempts._current = first
        return attempts

    def should_retry(self, error: BaseException, retries_done: int) -> bool:
        """Whether *error* is transient and the retry budget allows another attempt."""
        if retries_done >= self.max_retries:
            return False
        if _never_connected(error) and retries_done >= self.max_connect_retries:
            return False
        if (
            isinstance(error, APIError)
            and error.retry_after is not None
            and error.retry_after > self.max_retry_after
        ):
            return False
        return is_transient(error)


class Attempt:
    """One try of an operation (see [`RetryPolicy.attempts`][kling_async.retry.RetryPolicy.attempts]).

    Attributes:
        retries_done: how many tries came before this one (0 for the first).
    """

    __slots__ = ("_error", "_owner", "_skip_wait", "retries_done")

    def __init__(self, owner: Attempts, retries_done: int) -> None:
        self._owner = owner
        self.retries_done = retries_done
        self._error: BaseException | None = None
        self._skip_wait = False

    def skip_wait(self) -> None:
        """Retry without the policy's wait (somebody else, say a shared limiter, already waits)."""
        self._skip_wait = True

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            self._owner._done = True
            return False
        if not isinstance(exc, Exception) or not self._owner._should_retry(exc, self.retries_done):
            return False
        self._error = exc
        return True


class Attempts:
    """The async iterator returned by [`RetryPolicy.attempts`][kling_async.retry.RetryPolicy.attempts]."""

    __slots__ = ("_clock", "_current", "_done", "_on_retry", "_policy", "_should_retry")

    def __init__(
        self,
        policy: RetryPolicy,
        clock: Clock,
        should_retry: Callable[[BaseException, int], bool],
        on_retry: Callable[[BaseException, int, float], None] | None,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._should_retry = should_retry
        self._on_retry = on_retry
        self._current: Attempt | None = None
        self._done = False

    def __aiter__(self) -> Attempts:
        return self

    async def __anext__(self) -> Attempt:
        previous = self._current
        if previous is None:
            self._current = Attempt(self, 0)
            return self._current
        error = previous._error
        if self._done or error is None:
            # The block succeeded, or was left by break/return without failing.
            raise StopAsyncIteration
        retries = previous.retries_done
        delay = 0.0 if previous._skip_wait else self._policy.delay(retries, retry_after_of(error))
        if self._on_retry is not None:
            self._on_retry(error, retries + 1, delay)
        await self._clock.sleep(delay)
        self._current = Attempt(self, retries + 1)
        return self._current


def retry_after_of(error: BaseException) -> float | None:
    """The ``Retry-After`` an API error carries (``None`` for anything else)."""
    return error.retry_after if isinstance(error, APIError) else None


def _never_connected(error: BaseException) -> bool:
    """A refused or unroutable connection: not a timeout, and nothing was sent."""
    return (
        isinstance(error, APIConnectionError)
        and not isinstance(error, APITimeoutError)
        and not error.maybe_sent
    )


def is_transient(error: BaseException) -> bool:
    """Whether the same request may succeed later (never true for request or account errors)."""
    if isinstance(error, APIConnectionError | ResponseParseError):
        # An unreadable answer is usually a proxy's or gateway's glitch; reads may try again.
        return True
    if isinstance(error, RateLimitError | ServerError):
        return True
    if isinstance(error, APIError):
        return error.status == 408
    return False


def needs_new_token(error: BaseException) -> bool:
    """Whether a JWT should be re-signed: 1003 (not yet valid) or 1004 (expired)."""
    return isinstance(error, AuthenticationError) and error.code in (1003, 1004)


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: datetime | None = None
) -> float | None:
    """Read ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date) as seconds.

    Examples:
        >>> parse_retry_after({"retry-after": "2.5"})
        2.5
    """
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max((when - current).total_seconds(), 0.0)
