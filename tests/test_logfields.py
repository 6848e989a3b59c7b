"""Structured logging: library records about a task carry its id, kind and external id."""

from __future__ import annotations

import logging

import pytest

import kling_async as kling
from kling_async.events import Event, LimiterWaited
from kling_async.limiter import RateLimit, TokenBucketLimiter
from kling_async.logfields import FIELDS, TaskFields, id_fields
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.testing.clock import FakeClock

from .conftest import client_for


async def test_a_task_record_carries_the_task_fields(
    server: FakeKlingServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler's "passed its deadline" warning names the task in extra fields."""
    server.timeline = Timeline(queue_seconds=30, processing_seconds=30)
    caplog.set_level(logging.WARNING, logger="kling_async")
    async with client_for(server) as client:
        task = await client.text_to_video("Takes its time")
        with pytest.raises(kling.WaitTimeoutError):
            await client.wait(task, timeout=0.1)
    (record,) = [r for r in caplog.records if "passed its deadline" in r.getMessage()]
    assert record.kling_task_id == task.id  # type: ignore[attr-defined]
    assert record.kling_task_kind == "text2video"  # type: ignore[attr-defined]
    assert record.kling_external_task_id == task.external_task_id  # type: ignore[attr-defined]
    assert task.external_task_id


def test_the_filter_gives_every_record_the_fields() -> None:
    """A record not about a task gets ``None``s; one about a task keeps its values."""
    task_filter = TaskFields()
    plain = logging.LogRecord("kling_async.limiter", logging.INFO, __file__, 1, "hi", None, None)
    assert task_filter.filter(plain)
    assert all(getattr(plain, name) is None for name in FIELDS)
    about = logging.LogRecord("kling_async.batch", logging.INFO, __file__, 1, "hi", None, None)
    about.__dict__.update(id_fields("42", "text2video", None))
    assert task_filter.filter(about)
    assert about.kling_task_id == "42"  # type: ignore[attr-defined]
    assert about.kling_task_kind == "text2video"  # type: ignore[attr-defined]


async def test_the_limiter_reports_each_wait() -> None:
    """A caller that waits for a token is reported with how long it waited; others are not."""
    clock = FakeClock()
    seen: list[Event] = []
    limiter = TokenBucketLimiter(RateLimit(per_second=2, burst=1), clock=clock, events=seen.append)
    async with clock.autojump():
        for _ in range(3):
            await limiter.acquire()
        await limiter.on_rate_limited(retry_after=3.0)
        await limiter.acquire()
    waits = [event.waited for event in seen if isinstance(event, LimiterWaited)]
    # The last: the 3 s cool-down, then one token at the halved rate (1/s) refilled after it.
    assert waits == pytest.approx([0.5, 0.5, 4.0])
