"""Callback routes over a receiver's lifetime (issue 14.7): expiry and a confirmation race."""

from __future__ import annotations

import json

import anyio
import pytest

import kling_async as kling
from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.webhooks import TOKEN_PARAM, WebhookReceiver

from .conftest import API_KEY, FAST_POLL, FAST_RETRY
from .test_webhooks_hostile import Sink

TOKEN = "tok-0123456789abcdef-secret"
TASK_ID = "route-task-1"


def finished_body(task_id: str) -> bytes:
    return json.dumps(
        {
            "task_id": task_id,
            "task_status": "succeed",
            "task_result": {
                "videos": [{"id": "v1", "url": "https://cdn.test/v1.mp4", "duration": "5"}]
            },
        }
    ).encode()


def processing(task_id: str = TASK_ID) -> kling.Task:
    return kling.Task(id=task_id, kind=TEXT_TO_VIDEO, status=kling.TaskStatus.PROCESSING)


async def test_a_confirmation_outliving_its_watcher_serves_the_new_one() -> None:
    """Regression: forget_sink during a running confirmation, then a new watcher of the same
    task; the old confirmation's end forgot the new route and told nobody."""
    started = anyio.Event()
    release = anyio.Event()

    async def slow_confirm(claimed: kling.Task) -> kling.Task:
        started.set()
        await release.wait()
        return kling.Task(
            id=claimed.id,
            kind=TEXT_TO_VIDEO,
            status=kling.TaskStatus.SUCCEED,
            videos=claimed.videos,
        )

    receiver = WebhookReceiver(token=TOKEN, confirm=slow_confirm)
    first, second = Sink(), Sink()
    async with receiver:
        receiver.track(first, processing())
        assert await receiver.handle({}, {TOKEN_PARAM: TOKEN}, finished_body(TASK_ID)) == (
            200,
            "ok",
        )
        with anyio.fail_after(5):
            await started.wait()
        receiver.forget_sink(first)  # its watcher closed while the GET was out
        receiver.track(second, processing())  # a new watcher of the same task
        release.set()
        with anyio.fail_after(5):
            while not second.updates:  # noqa: ASYNC110 - the sink is a plain recorder
                await anyio.sleep(0.01)
    assert [task.status for task in second.updates] == [kling.TaskStatus.SUCCEED]
    assert first.updates == []  # closed: told nothing
    assert receiver.tracking == 0  # finished: no route left behind


async def test_drop_removes_only_that_watchers_route() -> None:
    receiver = WebhookReceiver(token=TOKEN)
    first, second = Sink(), Sink()
    receiver.track(first, processing())
    receiver.track(second, processing())
    receiver.drop(first, TASK_ID)
    assert receiver.tracking == 1
    receiver.drop(first, TASK_ID)  # twice: nothing more happens
    receiver.drop(second, "unknown-task")
    assert receiver.tracking == 1
    receiver.drop(second, TASK_ID)
    assert receiver.tracking == 0
    # Nothing routes there any more: a final callback is accepted and ignored.
    assert await receiver.handle({}, {TOKEN_PARAM: TOKEN}, finished_body(TASK_ID)) == (200, "ok")
    assert receiver.stats.ignored == 1
    assert not first.soon
    assert not second.soon


async def test_an_expired_task_leaves_no_route_in_a_long_lived_stream() -> None:
    """Regression: a task given up at its deadline stayed routed until max_tracked evicted it."""
    receiver = WebhookReceiver(token=TOKEN, public_url="http://127.0.0.1:9/kling/callback")
    timeline = Timeline(queue_seconds=60, processing_seconds=60)  # never finishes here
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as server,
        kling.KlingClient(
            webhook=receiver,
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=FAST_RETRY,
            poll=FAST_POLL,
            timeout=5.0,
        ) as client,
        client.watch(task_timeout=0.3) as stream,
    ):
        task = await client.text_to_video("A slow one")
        stream.add(task)
        assert receiver.tracking == 1
        with anyio.fail_after(10):
            while stream.pending:  # noqa: ASYNC110 - the expiry is the scheduler's own
                await anyio.sleep(0.02)
        # The stream is still open (not closed, more tasks may come), yet the route is gone.
        assert stream.running
        assert receiver.tracking == 0
        stream.close()
        with pytest.raises(kling.WaitTimeoutError):
            async for _ in stream:
                pass
