"""Kling's new-standard API (model in the path, ``GET /tasks`` by id), end to end over HTTP.

The client with ``api_style=ApiStyle.STANDARD`` against the emulator's new-standard routes,
which parse the new body shape on their own (not with the library's translation).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import kling_async as kling
from kling_async.standard import TASKS_PER_QUERY, create_path, standard_body
from kling_async.testing import FakeKlingServer, Timeline

from .conftest import API_KEY, FAST_POLL, FAST_RETRY

FAST = Timeline(queue_seconds=0.05, processing_seconds=0.15)


@pytest.fixture
async def server() -> AsyncIterator[FakeKlingServer]:
    async with FakeKlingServer(api_key=API_KEY, timeline=FAST) as running:
        yield running


def standard_client(server: FakeKlingServer, **options: Any) -> kling.KlingClient:
    settings: dict[str, Any] = {"retry": FAST_RETRY, "poll": FAST_POLL, "timeout": 5.0}
    settings.update(options)
    provider = kling.local_emulator(server.url, api_style=kling.ApiStyle.STANDARD)
    return kling.KlingClient(api_key=API_KEY, provider=provider, **settings)


def api_requests(server: FakeKlingServer) -> list[tuple[str, str]]:
    return [(record.method, record.path) for record in server.requests_to("api")]


async def test_text_to_video_goes_to_the_model_path_and_finishes(server: FakeKlingServer) -> None:
    async with standard_client(server) as client:
        task = await client.text_to_video("a lighthouse", model_name="kling-v3", mode="pro")
        done = await client.wait(task, timeout=10)
    assert done.status is kling.TaskStatus.SUCCEED
    assert done.videos
    assert done.videos[0].url.startswith("http://127.0.0.1")
    assert done.raw["status"] == "succeeded"
    sent = api_requests(server)
    assert sent[0] == ("POST", "/text-to-video/kling-3.0")
    assert {path for method, path in sent[1:]} == {"/tasks"}
    (stored,) = server.tasks.values()
    # The emulator read the new shape back into what was asked for.
    assert stored.body["prompt"] == "a lighthouse"
    assert stored.body["mode"] == "pro"
    assert stored.body["model_name"] == "kling-v3"
    assert stored.body["external_task_id"] == task.external_task_id


async def test_image_to_video_sends_the_image_as_contents(server: FakeKlingServer) -> None:
    image = "https://example.invalid/cat.png"
    async with standard_client(server) as client:
        task = await client.submit(
            kling.ImageToVideo(image=image, prompt="wave", model_name="kling-v2-6", duration="10")
        )
    (stored,) = server.tasks.values()
    assert stored.body["image"] == image
    assert stored.body["duration"] == "10"
    assert api_requests(server) == [("POST", "/image-to-video/kling-2.6")]
    assert task.kind is kling.IMAGE_TO_VIDEO


async def test_watching_many_tasks_reads_them_twenty_at_a_time(server: FakeKlingServer) -> None:
    count = 60
    async with standard_client(server) as client:
        tasks = await client.submit_many([kling.TextToVideo(prompt=f"p{i}") for i in range(count)])
        created = [task for task in tasks if isinstance(task, kling.Task)]
        assert len(created) == count
        async with client.watch(created, timeout=20) as results:
            finished = [task async for task in results]
    assert len(finished) == count
    queries = [record for record in server.requests_to("api") if record.path == "/tasks"]
    sizes = [len(record.query["task_ids"].split(",")) for record in queries]
    # Due tasks are read together, never more than one query takes.
    assert 1 < max(sizes) <= TASKS_PER_QUERY
    # One GET per task per check would be at least `count` requests per round; by id in
    # batches it is a fraction of that.
    assert len(queries) < count, (len(queries), sizes)


async def test_an_ambiguous_create_is_found_by_external_id_not_sent_twice(
    server: FakeKlingServer,
) -> None:
    server.faults.next_create("drop_after_create")
    async with standard_client(server) as client:
        task = await client.text_to_video("once only")
    assert server.create_counts[task.external_task_id or ""] == 1
    lookups = [r for r in server.requests_to("api") if "external_task_ids" in r.query]
    assert [r.query["external_task_ids"] for r in lookups] == [task.external_task_id]


async def test_a_watcher_iterated_outside_async_with_says_so(server: FakeKlingServer) -> None:
    async with standard_client(server) as client:
        task = await client.text_to_video("x")
        with pytest.raises(kling.ConfigurationError, match="async with"):
            await client.watch([task]).__anext__()


async def test_unknown_task_is_not_found(server: FakeKlingServer) -> None:
    async with standard_client(server) as client:
        with pytest.raises(kling.NotFoundError):
            await client.get_task("800000000000000000", "text2video")


async def test_fields_the_new_shape_lacks_fail_before_any_request(
    server: FakeKlingServer,
) -> None:
    async with standard_client(server) as client:
        with pytest.raises(kling.ValidationError) as caught:
            await client.submit(
                kling.ImageToVideo(
                    image="https://example.invalid/a.png", static_mask="https://x.invalid/m.png"
                )
            )
        assert caught.value.field == "static_mask"
        assert "legacy API style" in str(caught.value)
        with pytest.raises(kling.ValidationError) as model:
            await client.text_to_video("old model", model_name="kling-v1-6")
        assert model.value.field == "model_name"
    assert server.requests_to("api") == []


async def test_kinds_without_a_new_path_keep_the_legacy_one(server: FakeKlingServer) -> None:
    async with standard_client(server) as client:
        task = await client.submit(kling.TextToAudio(prompt="rain on a roof", duration=5))
        done = await client.wait(task, timeout=10)
    assert done.status is kling.TaskStatus.SUCCEED
    assert api_requests(server)[0] == ("POST", "/kling/v1/audio/text-to-audio")
    assert all(path != "/tasks" for _, path in api_requests(server))


async def test_access_keys_are_refused_for_the_new_api() -> None:
    with pytest.raises(kling.ConfigurationError, match="API key only"):
        kling.KlingClient(access_key="ak", secret_key="sk-secret", provider="kling-standard")


async def test_the_emulator_refuses_a_jwt_and_bad_bodies_on_new_routes() -> None:
    async with (
        FakeKlingServer(api_key=API_KEY, access_key="ak", secret_key="s" * 32) as server,
        kling.KlingClient(
            access_key="ak", secret_key="s" * 32, provider="kling", base_url=server.url
        ) as legacy,
    ):
        # The same credentials work on the legacy paths ...
        await legacy.text_to_video("legacy works")
        # ... and not on the new ones.
        token = legacy._auth.header()
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{server.url}/tasks", params={"task_ids": "1"}, headers={"Authorization": token}
            ) as answer:
                assert answer.status == 401
            key = {"Authorization": f"Bearer {API_KEY}"}
            async with http.post(
                f"{server.url}/text-to-video/kling-3.0",
                json={
                    "contents": [{"type": "text", "text": "x"}],
                    "settings": {"resolution": "8k"},
                },
                headers=key,
            ) as answer:
                assert answer.status == 400
                assert (await answer.json())["code"] == 1201
            async with http.get(
                f"{server.url}/tasks",
                params={"task_ids": "1", "external_task_ids": "e"},
                headers=key,
            ) as answer:
                assert answer.status == 400


async def test_the_cursor_list_pages_through_every_task(server: FakeKlingServer) -> None:
    async with standard_client(server) as client:
        for index in range(5):
            await client.text_to_video(f"p{index}")
    seen: list[str] = []
    cursor = ""
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.post(
                f"{server.url}/tasks",
                json={"limit": 2, "cursor": cursor},
                headers={"Authorization": f"Bearer {API_KEY}"},
            ) as answer:
                data = (await answer.json())["data"]
            seen.extend(item["id"] for item in data["result"])
            cursor = data["next_cursor"]
            if not cursor:
                break
    assert sorted(seen) == sorted(server.tasks)


def test_translation_examples() -> None:
    body = {
        "model_name": "kling-v2-5-turbo",
        "prompt": "p",
        "negative_prompt": "n",
        "sound": "on",
        "aspect_ratio": "9:16",
        "callback_url": "https://cb.invalid/x",
        "watermark_info": {"enabled": True},
    }
    assert create_path("text2video", body) == "text-to-video/kling-2.5-turbo"
    assert standard_body(body) == {
        "contents": [{"type": "text", "text": "p"}, {"type": "negative_text", "text": "n"}],
        "settings": {"audio": "native", "aspect_ratio": "9:16"},
        "options": {"callback_url": "https://cb.invalid/x", "watermark_info": {"enabled": True}},
    }
    with pytest.raises(kling.ValidationError, match="no path"):
        create_path("effects", body)


def test_a_due_batch_takes_along_tasks_due_within_the_lookahead() -> None:
    """The by-id regime's fill: due tasks start a batch, tasks due soon join it, later ones
    wait; without a due task nothing is taken early."""
    from kling_async._poll_entry import Entry
    from kling_async._poll_heap import DueHeap

    def entry(name: str) -> Entry:
        task = kling.Task(id=name, kind=kling.TEXT_TO_VIDEO, status=kling.TaskStatus.SUBMITTED)
        return Entry(task, 0.0, None, False)

    heap = DueHeap(batching=True, batch_size=20, lookahead=2.0)
    for name, when in (("due", 1.0), ("soon", 2.5), ("later", 3.5)):
        heap.push(entry(name), when)
    assert heap.take(0.5) is None
    taken = heap.take(1.0)
    assert taken is not None
    assert [item.task.id for item in taken] == ["due", "soon"]
    plain = DueHeap(batching=True, batch_size=20)
    for name, when in (("due", 1.0), ("soon", 2.5)):
        plain.push(entry(name), when)
    taken = plain.take(1.0)
    assert taken is not None
    assert [item.task.id for item in taken] == ["due"]


async def test_many_requests_are_all_checked_for_the_new_shape_before_any_is_sent(
    server: FakeKlingServer, tmp_path: Path
) -> None:
    requests = [
        kling.TextToVideo(prompt="fine", model_name="kling-v3"),
        kling.TextToVideo(prompt="old model", model_name="kling-v1-6"),
    ]
    async with standard_client(server) as client:
        with pytest.raises(kling.ValidationError, match="model_name"):
            await client.submit_many(requests)
        batch = kling.Batch(client, kling.InMemoryJournal(), tmp_path)
        with pytest.raises(kling.ConfigurationError, match="item 'b'"):
            await batch.run(list(zip("ab", requests, strict=True)))
    assert server.requests_to("api") == []


async def test_a_mixed_batch_keeps_the_by_id_answers_when_the_legacy_part_fails(
    server: FakeKlingServer,
) -> None:
    async with standard_client(server) as client:
        video = await client.text_to_video("new way")
        audio = await client.submit(kling.TextToAudio(prompt="rain", duration=5))
        server.faults.next_list("500", times=20)
        with pytest.raises(kling.scheduler.PartialBatchError) as caught:
            await client._batch_fetch([video, audio])
    assert [task.id for task in caught.value.tasks] == [video.id]
    assert isinstance(caught.value.error, kling.ServerError)


async def test_account_costs_refuses_naive_datetimes(server: FakeKlingServer) -> None:
    async with standard_client(server) as client:
        with pytest.raises(kling.ConfigurationError, match="time zone"):
            await client.account_costs(start=datetime(2026, 11, 1))
    assert server.requests_to("api") == []
