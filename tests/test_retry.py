"""The retry schedule, Retry-After handling and what counts as transient."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

import kling_async as kling
from kling_async.errors import error_for_response
from kling_async.retry import parse_retry_after


def test_exponential_schedule_with_cap() -> None:
    """Without jitter the delays double from the base up to the cap."""
    policy = kling.RetryPolicy(base=1.0, cap=8.0, jitter=0.0)
    assert [policy.delay(n, None) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_stays_in_band() -> None:
    """Jitter only shortens a delay, by at most the jitter fraction."""
    policy = kling.RetryPolicy(base=2.0, cap=30.0, jitter=0.25)
    rng = random.Random(7)
    delays = [policy.delay(1, None, rng) for _ in range(200)]
    assert all(3.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 100


def test_retry_after_wins_and_is_capped() -> None:
    """A server's Retry-After replaces the computed delay, up to max_retry_after."""
    policy = kling.RetryPolicy(max_retry_after=60.0)
    assert policy.delay(0, 12.0) == 12.0
    assert policy.delay(0, 500.0) == 60.0
    huge = error_for_response(status=429, code=1302, message="slow", retry_after=500.0)
    assert not policy.should_retry(huge, 0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    """Seconds, fractional seconds and milliseconds are understood; garbage is ignored."""
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    """An HTTP date is turned into seconds from now."""
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"Retry-After": header}, now=now) == 30.0


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (error_for_response(status=429, code=1302, message="m"), True),
        (error_for_response(status=429, code=1303, message="m"), True),
        (error_for_response(status=500, code=5000, message="m"), True),
        (error_for_response(status=504, code=5002, message="m"), True),
        (error_for_response(status=408, code=None, message="m"), True),
        (kling.APIConnectionError("reset"), True),
        (error_for_response(status=400, code=1201, message="m"), False),
        (error_for_response(status=429, code=1102, message="m"), False),
        (error_for_response(status=401, code=1000, message="m"), False),
        (error_for_response(status=400, code=1301, message="m"), False),
        (ValueError("x"), False),
    ],
)
def test_what_is_retried(error: BaseException, transient: bool) -> None:
    """Rate limits, server errors and connection problems are retried; request errors never."""
    assert kling.RetryPolicy().should_retry(error, 0) is transient


def test_budget_is_bounded() -> None:
    """No retry beyond max_retries."""
    error = error_for_response(status=500, code=5000, message="m")
    assert not kling.RetryPolicy(max_retries=2).should_retry(error, 2)
    with pytest.raises(kling.ConfigurationError):
        kling.RetryPolicy(base=-1)
