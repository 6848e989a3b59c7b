"""The create protocol and the slot wait on the fake clock: no wall time, exact virtual times.

A scripted transport answers like Kling (each answer chosen by the test), so that
``max_concurrency_wait``, the 1303 re-queue and the refresh of unwatched tasks while a
submission waits for a slot are measured in virtual seconds.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import pytest

import kling_async as kling
from kling_async.testing.clock import FakeClock
from kling_async.transport import RawResponse

Answer = Callable[[str, str, Any], RawResponse]


def _ok(data: Any) -> RawResponse:
    body = json.dumps({"code": 0, "message": "SUCCEED", "request_id": "r", "data": data})
    return RawResponse(200, {"content-type": "application/json"}, body.encode())


def _task(task_id: str, status: str = "submitted") -> dict[str, Any]:
    task: dict[str, Any] = {
        "task_id": task_id,
        "task_status": status,
        "created_at": 1,
        "updated_at": 1,
    }
    if status == "succeed":
        task["task_result"] = {"videos": [{"id": "v", "url": "https://cdn.test/v.mp4"}]}
    return task


def _too_many() -> RawResponse:
    body = json.dumps({"code": 1303, "message": "parallel task over resource pack limit"})
    return RawResponse(429, {"content-type": "application/json"}, body.encode())


class Scripted:
    """A transport whose answers come from *answer*; records (virtual time, method, url)."""

    def __init__(self, clock: FakeClock, answer: Answer) -> None:
        self.clock = clock
        self.answer = answer
        self.sent: list[tuple[float, str, str]] = []

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the Transport protocol's signature
    ) -> RawResponse:
        self.sent.append((self.clock.now(), method, url))
        await anyio.lowlevel.checkpoint()
        return self.answer(method, url, json)

    async def aclose(self) -> None:
        pass


def _client(clock: FakeClock, transport: Scripted, **options: Any) -> kling.KlingClient:
    return kling.KlingClient(
        api_key="sk-test",
        provider=kling.COMETAPI.with_base_url("http://127.0.0.1:9"),
        transport=transport,
        clock=clock,
        rate=None,
        **options,
    )


async def test_max_concurrency_wait_is_virtual_time() -> None:
    """Every create meets 1303: the submission gives up once the cap's virtual seconds pass."""
    clock = FakeClock()
    transport = Scripted(clock, lambda method, url, body: _too_many())
    retry = kling.RetryPolicy(jitter=0.0, max_concurrency_wait=30.0)
    async with clock.autojump(), _client(clock, transport, retry=retry) as client:
        with pytest.raises(kling.ConcurrencyLimitError):
            await client.text_to_video("never fits")
        creates = [when for when, method, _ in transport.sent if method == "POST"]
        # Re-queued with back-off 1, 2, 4, 8 s; after the fifth 1303 the 16 s wait crosses the
        # cap, so the slot wait that follows has no time left.
        assert creates == [0.0, 1.0, 3.0, 7.0, 15.0]
        assert clock.now() == 31.0
        assert client.slots.in_use == 0


async def test_a_1303_then_a_slot_creates_once() -> None:
    """Two 1303s, then room: one task, created on the third try, its slot held."""
    clock = FakeClock()
    answers = iter([_too_many(), _too_many(), _ok(_task("t-1"))])
    transport = Scripted(clock, lambda method, url, body: next(answers))
    async with (
        clock.autojump(),
        _client(clock, transport, retry=kling.RetryPolicy(jitter=0)) as client,
    ):
        task = await client.text_to_video("fits at last")
        assert task.id == "t-1"
        assert [when for when, _, _ in transport.sent] == [0.0, 1.0, 3.0]
        assert client.slots.in_use == 1


@pytest.mark.parametrize("seed", range(5))
async def test_the_first_wait_after_a_1303_is_at_least_a_second(seed: int) -> None:
    """kling-api.md §6: "recommended initial delay >= 1 second". With the default policy and
    its jitter, each re-queue waits at least the computed back-off (1 s, then 2 s), never less."""
    clock = FakeClock()
    answers = iter([_too_many(), _too_many(), _ok(_task("t-1"))])
    transport = Scripted(clock, lambda method, url, body: next(answers))
    random.seed(seed)
    async with clock.autojump(), _client(clock, transport) as client:
        await client.text_to_video("fits at last")
    first, second, third = (when for when, _, _ in transport.sent)
    assert 1.0 <= second - first <= 1.25
    assert 2.0 <= third - second <= 2.5


async def test_waiting_submitters_refresh_unwatched_tasks_on_virtual_time() -> None:
    """One slot, one unwatched task: the waiting submission checks it once per interval and
    gets the slot when the check sees it finish."""
    clock = FakeClock()
    finish_at = 95.0
    created = iter(["t-1", "t-2"])

    def answer(method: str, url: str, body: Any) -> RawResponse:
        if method == "POST":
            return _ok(_task(next(created)))
        status = "succeed" if clock.now() >= finish_at else "processing"
        return _ok(_task(url.rsplit("/", 1)[1], status))

    transport = Scripted(clock, answer)
    poll = kling.PollPolicy(expected=None, min_interval=10.0)
    async with clock.autojump(), _client(clock, transport, max_active_tasks=1, poll=poll) as client:
        await client.text_to_video("first")
        second = await client.text_to_video("waits for the first")
        assert second.id == "t-2"
        checks = [when for when, method, _ in transport.sent if method == "GET"]
        assert checks == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
        assert clock.now() == 100.0


def test_a_create_answer_with_an_id_and_no_status_is_a_submitted_task() -> None:
    """The new-standard API's create answer is not shown in full: ``{"id": ...}`` is enough."""
    from kling_async._create import _parse_created
    from kling_async.kinds import TEXT_TO_VIDEO

    task = _parse_created({"id": "880000000000000001", "external_id": "e1"}, TEXT_TO_VIDEO)
    assert task.id == "880000000000000001"
    assert task.status is kling.TaskStatus.SUBMITTED
    assert task.external_task_id == "e1"
    assert task.raw == {"id": "880000000000000001", "external_id": "e1"}
    with pytest.raises(kling.ResponseParseError):
        _parse_created({"message": "no id here"}, TEXT_TO_VIDEO)
