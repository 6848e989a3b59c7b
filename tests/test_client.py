"""KlingClient end to end over real HTTP against the emulator on 127.0.0.1."""

from __future__ import annotations

import base64
import copy
import json
import logging
import pickle
import struct
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import kling_async as kling
from kling_async.auth import AccessKeyAuth
from kling_async.batch import Batch
from kling_async.events import TaskPolled
from kling_async.journal import InMemoryJournal
from kling_async.models import NO_RAW
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.transport import RawResponse
from kling_async.wire import parse_task

from .conftest import API_KEY, FAST_POLL, FAST_RETRY, client_for


async def test_submit_wait_download(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """The quick-start path: submit, wait, download a real MP4."""
    task = await client.submit(kling.TextToVideo(prompt="A beach at sunset", duration="5"))
    assert task.status is kling.TaskStatus.SUBMITTED
    assert task.kind is kling.TEXT_TO_VIDEO
    assert task.external_task_id
    done = await client.wait(task, timeout=30)
    assert done.succeeded
    assert done.videos
    assert done.videos[0].duration
    path = await client.download(done, tmp_path)
    data = path.read_bytes()
    assert path.parent == tmp_path
    assert data[4:8] == b"ftyp"


async def test_text_to_video_sugar_and_wire_fields(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """Keyword sugar builds the same request; every field reaches the wire as documented."""
    task = await client.text_to_video(
        "A cat",
        negative_prompt="dogs",
        model_name="kling-v1",
        mode="pro",
        duration=10,
        aspect_ratio="9:16",
        cfg_scale=0.3,
        camera_control=kling.CameraControl(type="simple", config=kling.CameraConfig(zoom=4)),
        watermark=True,
        external_task_id="my-ext-1",
        relax_rules={"camera-control"},  # documented for kling-v1 std 5s only
    )
    body = server.tasks[task.id].body
    assert "relax_rules" not in body
    assert body["prompt"] == "A cat"
    assert body["duration"] == "10"
    assert body["mode"] == "pro"
    assert body["aspect_ratio"] == "9:16"
    assert body["cfg_scale"] == 0.3
    assert body["negative_prompt"] == "dogs"
    assert body["model_name"] == "kling-v1"
    assert body["camera_control"]["config"]["zoom"] == 4
    assert body["watermark_info"] == {"enabled": True}
    assert body["external_task_id"] == "my-ext-1"
    assert task.external_task_id == "my-ext-1"


async def test_get_task_by_id_and_kind(client: kling.KlingClient) -> None:
    """A task can be fetched from its id plus its kind name."""
    task = await client.submit(kling.ImageToVideo(image="https://cdn.test/a.png", prompt="wave"))
    again = await client.get_task(task.id, "image2video")
    assert again.id == task.id
    assert again.kind is kling.IMAGE_TO_VIDEO


async def test_get_task_reuses_an_unchanged_answer(server: FakeKlingServer) -> None:
    """An answer identical to the one a Task was built from gives that Task back, unparsed;
    any change in the answer gives a freshly parsed Task."""
    server.timeline = Timeline(queue_seconds=3600, processing_seconds=3600)
    async with kling.KlingClient(
        api_key=API_KEY, provider=kling.local_emulator(server.url), retry=FAST_RETRY
    ) as client:
        created = await client.text_to_video("still queued")
        first = await client.get_task(created)
        assert first is not created  # the create answer differs from a status answer
        assert await client.get_task(first) is first
        server.set_status(first.id, "failed", "policy")
        changed = await client.get_task(first)
        assert changed is not first
        assert changed.failed
        assert changed.status_msg == "policy"


async def test_the_scheduler_keeps_no_raw_answer_of_a_running_task(
    server: FakeKlingServer,
) -> None:
    """Tasks the scheduler keeps while they run hold no raw answer (memory at 100k tasks);
    the finished task it hands out holds its answer, and so does anything get_task returns,
    even when asked about a task the scheduler slimmed."""
    server.timeline = Timeline(queue_seconds=0.05, processing_seconds=0.6)
    seen: list[kling.Task] = []
    async with kling.KlingClient(
        api_key=API_KEY,
        provider=kling.local_emulator(server.url),
        retry=FAST_RETRY,
        poll=FAST_POLL,
    ) as client:
        client.events.add(
            lambda event: seen.append(event.task) if isinstance(event, TaskPolled) else None
        )
        task = await client.text_to_video("a slow cat")
        done = await client.wait(task, timeout=10)
        running = [polled for polled in seen if not polled.is_finished]
        assert running, "the scheduler saw the task running"
        assert all(dict(polled.raw) == {} for polled in running)
        assert all(polled.fingerprint is not None for polled in running)
        assert done.raw["task_status"] == "succeed"
        assert done.videos
        again = await client.get_task(running[-1])
        assert again.raw["task_id"] == task.id


async def test_an_error_answer_never_reads_as_unchanged(server: FakeKlingServer) -> None:
    """The fingerprint shortcut only skips answers that differ in their request ids alone:
    an error that repeats the task's data is raised, a change in the task is read."""
    data = {"task_id": "42", "task_status": "processing", "created_at": 1_780_000_000_000}
    answers = [
        (200, {"code": 0, "message": "SUCCEED", "request_id": "a", "data": data}),
        (200, {"code": 0, "message": "SUCCEED", "request_id": "b", "data": data}),
        (200, {"code": 1303, "message": "too many tasks", "request_id": "c", "data": data}),
        (200, {"code": 0, "message": "SUCCEED", "request_id": 7, "data": data}),
        (200, {"code": 0, "request_id": "d", "data": {**data, "task_status": "failed"}}),
    ]

    class Scripted:
        async def request(self, *args: object, **kwargs: object) -> RawResponse:
            status, body = answers.pop(0)
            return RawResponse(status, {}, json.dumps(body).encode())

        async def aclose(self) -> None: ...

    retry = kling.RetryPolicy(max_retries=0)
    async with client_for(server, transport=Scripted(), retry=retry) as client:
        first = await client.get_task("42")
        assert first.fingerprint is not None
        assert await client.get_task(first) is first
        with pytest.raises(kling.ConcurrencyLimitError):
            await client.get_task(first)
        assert await client.get_task(first) is first  # a numeric request id is skipped too
        assert (await client.get_task(first)).failed
    assert answers == []


async def test_the_shortcut_needs_status_200_and_a_raw_answer_for_get_task(
    server: FakeKlingServer,
) -> None:
    """The same body with another HTTP status is read (and raised); a task the scheduler
    kept without its raw answer gets one back from get_task, even when nothing changed."""
    data = {"task_id": "42", "task_status": "processing"}
    body = json.dumps({"code": 0, "message": "SUCCEED", "request_id": "a", "data": data})
    statuses = [200, 503, 200, 200]

    class Scripted:
        async def request(self, *args: object, **kwargs: object) -> RawResponse:
            return RawResponse(statuses.pop(0), {}, body.encode())

        async def aclose(self) -> None: ...

    retry = kling.RetryPolicy(max_retries=0)
    async with client_for(server, transport=Scripted(), retry=retry) as client:
        polled = await client._poll(
            kling.Task("42", kling.TEXT_TO_VIDEO, kling.TaskStatus.SUBMITTED)
        )
        assert dict(polled.raw) == {}
        with pytest.raises(kling.ServerError):
            await client.get_task(polled)
        assert await client._poll(polled) is polled
        again = await client.get_task(polled)
        assert again is not polled
        assert again.raw["task_id"] == "42"
    assert statuses == []


def test_a_task_kept_without_its_answer_pickles_copies_and_encodes() -> None:
    """The empty raw of a tracked task refuses changes, yet pickles, copies and encodes."""
    data = {"task_id": "7", "task_status": "processing"}
    lean = parse_task(data, kling.TEXT_TO_VIDEO, keep_raw=False)
    assert lean.raw is NO_RAW
    assert pickle.loads(pickle.dumps(lean)).raw is NO_RAW  # noqa: S301 - our own bytes
    assert copy.deepcopy(lean).raw is NO_RAW
    assert json.dumps(lean.raw) == "{}"
    with pytest.raises(TypeError):
        lean.raw["x"] = 1  # type: ignore[index]
    unknown = parse_task({**data, "task_status": "weird"}, kling.TEXT_TO_VIDEO, keep_raw=False)
    assert unknown.raw["task_status"] == "weird"  # all there is to debug an unknown status


async def test_validation_before_network(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """A request over a limit is refused before anything is sent."""
    with pytest.raises(kling.ValidationError, match="prompt"):
        await client.text_to_video("x" * 501)
    assert server.requests == []


async def test_server_validation_error_is_typed(client: kling.KlingClient) -> None:
    """The emulator's 1201 (duration not allowed) comes back as BadRequestError with its code."""
    with pytest.raises(kling.BadRequestError) as info:
        # The default model's own rule would refuse it first; relaxed, the server decides.
        await client.text_to_video("x", duration="7", relax_rules={"duration"})
    assert info.value.code == 1201
    assert info.value.status == 400
    assert "duration" in info.value.message


async def test_failed_task_raises(client: kling.KlingClient) -> None:
    """wait() raises TaskFailedError carrying the failed task."""
    task = await client.text_to_video("please FAIL")
    with pytest.raises(kling.TaskFailedError, match="content risk control") as info:
        await client.wait(task, timeout=30)
    assert info.value.task.failed


async def test_wait_timeout(server: FakeKlingServer) -> None:
    """wait() gives up at its deadline and says which task is pending."""
    async with kling.KlingClient(
        api_key=API_KEY, provider=kling.local_emulator(server.url), retry=FAST_RETRY, poll=FAST_POLL
    ) as client:
        server.timeline = Timeline(queue_seconds=3600, processing_seconds=3600)
        task = await client.text_to_video("slow")
        with pytest.raises(kling.WaitTimeoutError) as info:
            await client.wait(task, timeout=0.3)
        assert [t.id for t in info.value.pending] == [task.id]


async def test_watch_deadline_cuts_off_an_open_stream(server: FakeKlingServer) -> None:
    """An open stream whose deadline passes ends with one WaitTimeoutError, even if empty.

    Otherwise a producer still adding tasks could not tell a timeout from a finished stream.
    """
    async with kling.KlingClient(
        api_key=API_KEY, provider=kling.local_emulator(server.url), retry=FAST_RETRY, poll=FAST_POLL
    ) as client:
        async with client.watch(timeout=0.1) as results:
            with pytest.raises(kling.WaitTimeoutError) as info:
                await results.__anext__()
            assert info.value.pending == ()
            assert [task async for task in results] == []

        server.timeline = Timeline(queue_seconds=3600, processing_seconds=3600)
        slow = await client.text_to_video("slow")
        async with client.watch(timeout=0.2) as results:
            results.add(slow)
            with pytest.raises(kling.WaitTimeoutError) as info:
                await results.__anext__()
            assert [task.id for task in info.value.pending] == [slow.id]
            assert [task async for task in results] == []  # reported once, not twice


async def test_watch_of_an_empty_list_ends_at_once(client: kling.KlingClient) -> None:
    """``watch([])`` has nothing to wait for: it is not an open stream."""
    async with client.watch([], timeout=0.2) as results:
        with anyio.fail_after(5):
            assert [task async for task in results] == []


async def test_a_fatal_error_is_the_only_error_even_when_the_deadline_passes(
    client: kling.KlingClient,
) -> None:
    """A watcher that stopped on a fatal error does not report a timeout after it as well."""
    ghost = kling.Task(id="123456789", kind=kling.TEXT_TO_VIDEO, status=kling.TaskStatus.SUBMITTED)
    async with client.watch(timeout=0.3) as results:
        results.add(ghost)
        with pytest.raises(kling.NotFoundError):
            await results.__anext__()
        await anyio.sleep(0.5)  # the deadline passes too
        assert [task async for task in results] == []


async def test_auth_failure_is_typed(server: FakeKlingServer) -> None:
    """A wrong key gives AuthenticationError, not retried."""
    async with kling.KlingClient(
        api_key="sk-wrong", provider=kling.local_emulator(server.url), retry=FAST_RETRY
    ) as client:
        with pytest.raises(kling.AuthenticationError):
            await client.text_to_video("x")
    assert server.stats.routes["create"] == 1


async def test_query_retried_after_server_error(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """A 500 on a query is retried; the caller sees the answer."""
    task = await client.text_to_video("x")
    server.faults.next_query("500", times=2)
    again = await client.get_task(task)
    assert again.id == task.id
    assert server.stats.routes["query"] == 3


async def test_malformed_answer_is_typed(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """A body with wrong types raises ResponseParseError, never KeyError."""
    task = await client.text_to_video("x")
    server.faults.next_query("malformed_no_data", times=10)
    with pytest.raises(kling.ResponseParseError, match="data"):
        await client.get_task(task)


async def test_one_malformed_answer_is_retried(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """A single unreadable answer to a read is retried like a dropped connection."""
    task = await client.text_to_video("x")
    server.faults.next_query("malformed_text")
    assert (await client.get_task(task)).id == task.id


async def test_unreadable_create_answer_is_ambiguous(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """A create whose 200 answer cannot be read did create a task: it is adopted, not repeated."""
    server.faults.next_create("malformed_text")
    task = await client.submit(kling.TextToVideo(prompt="x", external_task_id="amb-5"))
    assert server.create_counts["amb-5"] == 1
    assert task.id == server.task_by_external_id("amb-5").task_id


async def test_drop_after_create_is_adopted(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """The create lands but the answer is lost: the client finds the task, no second create."""
    server.faults.next_create("drop_after_create")
    task = await client.submit(kling.TextToVideo(prompt="x", external_task_id="amb-1"))
    assert server.create_counts["amb-1"] == 1
    assert server.tasks[task.id].external_task_id == "amb-1"


async def test_drop_before_create_resubmits_once(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """Nothing was created: the client checks, then creates exactly one task."""
    server.faults.next_create("drop_before_create")
    await client.submit(kling.TextToVideo(prompt="x", external_task_id="amb-2"))
    assert server.create_counts["amb-2"] == 1


async def test_server_error_on_create_never_duplicates(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """Repeated 5xx on create: looked up each time, created once."""
    server.faults.next_create("503", times=2)
    task = await client.submit(kling.TextToVideo(prompt="x", external_task_id="amb-3"))
    assert server.create_counts["amb-3"] == 1
    assert task.external_task_id == "amb-3"


async def test_uncertain_when_provider_cannot_confirm(server: FakeKlingServer) -> None:
    """On a provider whose 'not found' proves nothing, an ambiguous create is reported, not retried."""
    provider = kling.Provider(
        name="gateway", base_url=server.url, prefix="/kling/v1", trust_not_found=False
    )
    async with kling.KlingClient(api_key=API_KEY, provider=provider, retry=FAST_RETRY) as client:
        server.faults.next_create("drop_before_create")
        with pytest.raises(kling.SubmitUncertainError) as info:
            await client.submit(kling.TextToVideo(prompt="x", external_task_id="amb-4"))
    assert info.value.external_task_id == "amb-4"
    assert server.create_counts.get("amb-4", 0) == 0


async def test_jwt_resigned_on_expiry() -> None:
    """An expired JWT (1004) is re-signed once and the request succeeds."""

    class Skewed:
        """Signs the first token an hour in the past, then tells the truth."""

        def __init__(self) -> None:
            self.calls = 0

        def now(self) -> float:
            self.calls += 1
            return time.time() - (7200 if self.calls == 1 else 0)

        async def sleep(self, seconds: float) -> None:
            raise AssertionError

    async with FakeKlingServer(access_key="ak-test", secret_key="sk-jwt-secret") as server:
        auth = AccessKeyAuth("ak-test", "sk-jwt-secret", wall_clock=Skewed())
        async with kling.KlingClient(
            auth=auth, provider=kling.local_emulator(server.url), retry=FAST_RETRY
        ) as client:
            task = await client.text_to_video("x")
        assert task.id in server.tasks
        assert auth.signed == 2
        assert server.stats.codes[1004] == 1


async def test_key_never_leaks(server: FakeKlingServer, caplog: pytest.LogCaptureFixture) -> None:
    """The API key is in no log line, no exception text and no repr, even on failures."""
    caplog.set_level(logging.DEBUG)
    async with kling.KlingClient(
        api_key=API_KEY, provider=kling.local_emulator(server.url), retry=FAST_RETRY
    ) as client:
        server.faults.next_query("500", times=10)
        task = await client.text_to_video("x")
        with pytest.raises(kling.ServerError) as info:
            await client.get_task(task)
        texts = [str(info.value), repr(info.value), repr(client), caplog.text]
    for text in texts:
        assert API_KEY not in text
    assert any(API_KEY in r.headers.get("Authorization", "") for r in server.requests)


async def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key anywhere: the error says which variables would work."""
    for name in ("COMETAPI_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(kling.ConfigurationError, match="COMETAPI_KEY"):
        kling.KlingClient()
    monkeypatch.setenv("COMETAPI_KEY", "sk-env")
    assert "sk-env" not in repr(kling.KlingClient())


async def test_concurrency_limit_requeues(server: FakeKlingServer) -> None:
    """A 1303 from a server-side slot limit re-queues the submission instead of failing it."""
    server.max_active_tasks = 1
    async with kling.KlingClient(
        api_key=API_KEY, provider=kling.local_emulator(server.url), retry=FAST_RETRY, poll=FAST_POLL
    ) as client:
        tasks = await client.submit_many([kling.TextToVideo(prompt=f"p{i}") for i in range(3)])
    assert len({t.id for t in tasks}) == 3
    assert server.stats.codes[1303] >= 1
    assert all(count == 1 for count in server.create_counts.values())


async def test_concurrency_wait_can_be_capped(server: FakeKlingServer) -> None:
    """With ``max_concurrency_wait``, a submission that keeps getting 1303 gives up, cleanly."""
    server.max_active_tasks = 1
    server.timeline = Timeline(queue_seconds=3600, processing_seconds=3600)
    retry = kling.RetryPolicy(base=0.01, cap=0.02, jitter=0.0, max_concurrency_wait=0.1)
    async with client_for(server, retry=retry, max_active_tasks=5) as client:
        first = await client.text_to_video("holds the only server slot")
        with pytest.raises(kling.ConcurrencyLimitError):
            await client.text_to_video("never fits")
        # One 1303, then a wait for a slot (the usable limit shrank to the one task running)
        # that the cap cut short.
        assert server.stats.codes[1303] == 1
        assert client.slots.in_use == 1  # only the first task holds a client-side slot
    assert list(server.tasks) == [first.id]


async def test_cancelled_while_requeued_after_1303_keeps_slots_right(
    server: FakeKlingServer,
) -> None:
    """Cancelling a submission that is waiting again after a 1303 gives back nothing twice."""
    server.max_active_tasks = 1
    server.timeline = Timeline(queue_seconds=3600, processing_seconds=3600)
    async with client_for(server, max_active_tasks=5) as client:
        await client.text_to_video("holds the only server slot")
        with anyio.move_on_after(0.3):
            await client.text_to_video("waits for a slot until cancelled")
        assert server.stats.codes[1303] >= 1
        assert client.slots.in_use == 1  # the first task's slot, not released by the second


def test_concurrency_wait_must_not_be_negative() -> None:
    """A negative cap is a configuration error, named."""
    with pytest.raises(kling.ConfigurationError, match="max_concurrency_wait"):
        kling.RetryPolicy(max_concurrency_wait=-1)


async def test_adopted_task_holds_a_slot_until_seen_finished(server: FakeKlingServer) -> None:
    """A task adopted from an earlier run occupies a slot; seeing it finish frees the slot."""
    async with kling.KlingClient(
        api_key=API_KEY,
        provider=kling.local_emulator(server.url),
        retry=FAST_RETRY,
        poll=FAST_POLL,
        max_active_tasks=1,
    ) as client:
        task = await client.text_to_video("earlier run")
        fresh = kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            poll=FAST_POLL,
            max_active_tasks=1,
        )
        await fresh.adopt(task)
        await fresh.adopt(task)
        assert fresh.slots.in_use == 1
        done = await fresh.wait(task, timeout=30)
        assert done.succeeded
        assert fresh.slots.in_use == 0
        await fresh.aclose()


@pytest.mark.parametrize(
    ("base_url", "prefix", "expected"),
    [
        ("https://api.example", "/kling/v1", "https://api.example/kling/v1/videos/text2video/1"),
        ("https://api.example/", "kling/v1/", "https://api.example/kling/v1/videos/text2video/1"),
        ("https://gw.example/kling/v1", "", "https://gw.example/kling/v1/videos/text2video/1"),
        ("https://gw.example/kling/v1/", "/", "https://gw.example/kling/v1/videos/text2video/1"),
    ],
)
def test_a_provider_joins_its_base_url_prefix_and_path_with_single_slashes(
    base_url: str, prefix: str, expected: str
) -> None:
    """A gateway whose base URL holds the whole path (no prefix) used to get an empty segment."""
    provider = kling.Provider(name="p", base_url=base_url, prefix=prefix)
    assert provider.url("videos/text2video/1") == expected
    assert provider.url("/videos/text2video/1") == expected


@pytest.mark.parametrize(
    "name",
    [
        "provider",
        "retry",
        "limiter",
        "slots",
        "max_active_tasks",
        "timeout",
        "clock",
        "events",
        "completions",
        "webhook",
    ],
)
async def test_what_the_client_was_built_with_cannot_be_reassigned(name: str) -> None:
    """The pipeline, the slot pools and the scheduler hold these from construction on: a
    reassigned one would silently go unused, so reassigning is refused."""
    client = kling.KlingClient(api_key=API_KEY, provider="kling", max_active_tasks=3, timeout=7.0)
    before = getattr(client, name)
    with pytest.raises(AttributeError):
        setattr(client, name, before)
    assert getattr(client, name) is before
    assert client.provider.name == "kling"
    assert client.max_active_tasks == 3
    assert client.timeout == 7.0
    await client.aclose()


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "60"])
async def test_generate_checks_its_timeout_before_paying(
    client: kling.KlingClient, server: FakeKlingServer, bad: object
) -> None:
    with pytest.raises(kling.ConfigurationError, match="timeout must be a positive number"):
        await client.generate("a cat", timeout=bad)  # type: ignore[arg-type]
    assert server.tasks == {}


async def test_generate_checks_its_destination_before_paying(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(kling.StorageError, match="is a file, not a folder"):
        await client.generate("a cat", to=blocker / "videos" / "cat.mp4")
    with pytest.raises(kling.ConfigurationError, match="to must be a path"):
        await client.generate("a cat", to=42)  # type: ignore[arg-type]
    assert server.tasks == {}


async def test_an_error_after_generate_created_the_task_names_it(server: FakeKlingServer) -> None:
    """The task is paid for: the error says which one it was, to fetch it again."""
    server.timeline = Timeline(queue_seconds=1e9)
    async with client_for(server) as client:
        with pytest.raises(kling.WaitTimeoutError) as info:
            await client.generate("a cat", timeout=0.2)
    (task_id,) = server.tasks
    assert any(task_id in note and "get_task" in note for note in info.value.__notes__)


async def test_image_to_video_takes_bytes_and_words_bad_inputs(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path
) -> None:
    """Bytes are sent as base64; a missing file, a folder or a number is a ValidationError
    naming the image, never a bare OSError or TypeError."""
    png = _png_bytes(400, 400)
    task = await client.image_to_video(png, "it waves")
    assert server.tasks[task.id].body["image"] == base64.b64encode(png).decode()
    for bad, says in [
        (tmp_path / "missing.png", "cannot read"),
        (tmp_path, "cannot read"),
        (42, "got int"),
    ]:
        with pytest.raises(kling.ValidationError, match=says):
            await client.image_to_video(bad, "x")  # type: ignore[arg-type]
    assert len(server.tasks) == 1


def _png_bytes(width: int, height: int) -> bytes:
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    return header + struct.pack(">II", width, height) + b"\x08\x02\0\0\0" + b"\0" * 40


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"timeout": "60"}, "timeout must be a positive number"),
        ({"timeout": float("nan")}, "timeout must be a positive number"),
        ({"timeout": float("inf")}, "timeout must be a positive number"),
        ({"timeout": True}, "timeout must be a positive number"),
        ({"base_url": "http://"}, "base_url names no host"),
        ({"base_url": "https:///v1"}, "base_url names no host"),
        ({"base_url": "http://[::1"}, "base_url is not a URL"),
    ],
)
def test_client_options_of_the_wrong_kind_are_configuration_errors(
    options: dict[str, object], says: str
) -> None:
    """Never a TypeError from deep inside, and never accepted to fail on the first request."""
    with pytest.raises(kling.ConfigurationError, match=says):
        kling.KlingClient(api_key=API_KEY, **options)  # type: ignore[arg-type]


async def test_arguments_of_the_wrong_kind_are_configuration_errors(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """One request where a list belongs, an id that is no string, a Task's id passed to wait,
    a timeout that is no number: each is a ConfigurationError that says what was expected."""
    task = await client.text_to_video("x")
    calls = [
        (lambda: client.get_task(123), "a Task or its id"),  # type: ignore[arg-type]
        (lambda: client.wait(task.id), "wait\\(\\) takes a Task"),  # type: ignore[arg-type]
        (lambda: client.wait(task, timeout="5"), "timeout must be a number"),  # type: ignore[arg-type]
        (lambda: client.wait(task, timeout=-1), "timeout must be a number"),
        (lambda: client.submit_many(kling.TextToVideo(prompt="y")), "takes a list of requests"),  # type: ignore[arg-type]
        (lambda: client.submit_many(42), "takes a list of requests, got int"),  # type: ignore[arg-type]
        (lambda: client.list_tasks(page="1"), "page must be a whole number"),  # type: ignore[arg-type]
    ]
    for call, says in calls:
        with pytest.raises(kling.ConfigurationError, match=says):
            await call()
    with pytest.raises(kling.ConfigurationError, match="takes a list of requests"):
        client.as_completed(kling.TextToVideo(prompt="y"))  # type: ignore[arg-type]
    assert len(server.tasks) == 1


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: kling.PollPolicy(first_delay="1"), "PollPolicy.first_delay must be > 0"),
        (lambda: kling.PollPolicy(jitter=float("nan")), "PollPolicy.jitter must be in"),
        (lambda: kling.RetryPolicy(base="1"), "RetryPolicy.base must be >= 0"),
        (lambda: kling.RateLimit(per_second="5"), "RateLimit.per_second must be > 0"),
        (lambda: kling.WebhookReceiver(max_body="10"), "must be positive numbers"),
        (lambda: kling.WebhookReceiver(token=12345678901234567890), "a callback token is a str"),
        (lambda: kling.WebhookReceiver(public_url=5), "public_url must be a URL"),
    ],
)
def test_settings_of_the_wrong_kind_are_configuration_errors(build: Any, says: str) -> None:
    with pytest.raises(kling.ConfigurationError, match=says):
        build()


@pytest.mark.parametrize(
    ("items", "says"),
    [
        (kling.TextToVideo(prompt="x"), "a list of \\(key, request\\) pairs, got one TextToVideo"),
        ([kling.TextToVideo(prompt="x")], "takes \\(key, request\\) pairs, got TextToVideo"),
        ([(1, kling.TextToVideo(prompt="x"))], "batch keys must be non-empty strings, got 1"),
    ],
)
async def test_batch_items_of_the_wrong_shape_are_configuration_errors(
    client: kling.KlingClient, server: FakeKlingServer, tmp_path: Path, items: Any, says: str
) -> None:
    async with InMemoryJournal() as journal:
        with pytest.raises(kling.ConfigurationError, match=says):
            await Batch(client, journal, tmp_path).run(items)
    assert server.tasks == {}
