"""When to retry a failed request, and how long to wait first.

Reads and creates are treated differently. A read (a task query) is retried on connection errors,
timeouts, HTTP 408/429/5xx and Kling codes 1302/1303/5000-5002. A create is never retried blindly:
:mod:`kling_async.client` first finds out whether the failed attempt created a task.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import attrs

from .errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    ConfigurationError,
    RateLimitError,
    ResponseParseError,
    ServerError,
)

__all__ = ["RetryPolicy", "parse_retry_after"]


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ConfigurationError(f"RetryPolicy.{attribute.name} must be >= 0, got {value}")


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
        base: the first delay, in seconds.
        cap: the longest computed delay.
        jitter: the fraction of randomness in each delay.
        max_retry_after: the longest ``Retry-After`` the client will honour.
        max_concurrency_wait: seconds a submission keeps re-queueing after the server's
            1303 (too many tasks in flight for the account) before the last
            :class:`~kling_async.ConcurrencyLimitError` is raised; ``None`` (the default) waits
            until the caller cancels. A 1303 definitely created nothing, so waiting is safe;
            the cap is for callers who would rather give up.

    Examples:
        >>> RetryPolicy(jitter=0).delay(2, retry_after=None)
        4.0
    """

    max_retries: int = attrs.field(default=5, validator=_positive)
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

    def should_retry(self, error: BaseException, retries_done: int) -> bool:
        """Whether *error* is transient and the retry budget allows another attempt."""
        if retries_done >= self.max_retries:
            return False
        if (
            isinstance(error, APIError)
            and error.retry_after is not None
            and error.retry_after > self.max_retry_after
        ):
            return False
        return is_transient(error)


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
