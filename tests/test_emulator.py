"""Tests of the Kling emulator itself, driven with raw aiohttp requests (not the client)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kling_async.testing import (
    DEFAULT_KINDS,
    FakeKlingServer,
    Faults,
    KindSpec,
    Timeline,
    Validation,
    encode_jwt,
    validate_lenient,
)

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
T2V = "/v1/videos/text2video"
COMET_T2V = "/kling/v1/videos/text2video"
I2V = "/kling/v1/videos/image2video"


class StepClock:
    """A hand-stepped server clock, so lifecycle tests never sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        """The current reading."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@pytest.fixture
def clock() -> StepClock:
    """A fresh hand-stepped clock."""
    return StepClock()


@pytest.fixture
async def emu(clock: StepClock) -> AsyncIterator[FakeKlingServer]:
    """An emulator on the step clock: 1 s submitted, then 4 s processing."""
    async with FakeKlingServer(
        api_key=KEY, timeline=Timeline(queue_seconds=1.0, processing_seconds=4.0), clock=clock
    ) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A raw aiohttp session (the client library is not used here)."""
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Send one request and return (HTTP status, parsed JSON body)."""
    async with http.request(
        method, url, json=json, headers=AUTH if headers is None else headers
    ) as response:
        return response.status, await response.json(content_type=None)


async def create(
    http: aiohttp.ClientSession, emu: FakeKlingServer, path: str = T2V, **body: Any
) -> str:
    """Create a task that must succeed and return its id."""
    status, reply = await call(http, "POST", emu.url + path, json={"prompt": "a cat", **body})
    assert status == 200, reply
    assert reply["code"] == 0
    task_id: str = reply["data"]["task_id"]
    return task_id


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until *predicate* holds (generous timeout: the machine may be loaded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- lifecycle -------------------------------------------------------------------------------


async def test_create_and_query_lifecycle(
    emu: FakeKlingServer, http: aiohttp.ClientSession, clock: StepClock
) -> None:
    status, reply = await call(
        http,
        "POST",
        emu.url + COMET_T2V,
        json={"prompt": "a cat", "duration": "10", "mode": "pro", "external_task_id": "ext-1"},
    )
    assert status == 200
    assert reply["code"] == 0
    assert reply["message"] == "SUCCEED"
    assert len(reply["request_id"]) == 36
    data = reply["data"]
    task_id = data["task_id"]
    assert len(task_id) == 18
    assert task_id.isdigit()
    assert data["task_status"] == "submitted"
    assert data["task_info"] == {"external_task_id": "ext-1"}
    assert data["created_at"] == data["updated_at"]
    assert data["created_at"] > 1_600_000_000_000  # milliseconds

    seen = []
    for step in (0.0, 1.5, 4.0):
        clock.advance(step)
        # Both prefixes reach the same account.
        for prefix in ("/v1", "/kling/v1"):
            status, reply = await call(
                http, "GET", f"{emu.url}{prefix}/videos/text2video/{task_id}"
            )
            assert status == 200
            seen.append(reply["data"]["task_status"])
    assert seen == ["submitted"] * 2 + ["processing"] * 2 + ["succeed"] * 2

    task = reply["data"]
    assert task["task_status_msg"] == ""
    assert task["final_unit_deduction"] == "4"
    assert task["updated_at"] - task["created_at"] == 5000
    [video] = task["task_result"]["videos"]
    assert video["url"] == f"{emu.cdn_url}/videos/{video['id']}.mp4"
    assert video["watermark_url"] == f"{emu.cdn_url}/videos/{video['id']}-wm.mp4"
    assert video["duration"] == "10.042"
    assert emu.status_of(task_id) == "succeed"


async def test_fail_marker_and_set_status(
    emu: FakeKlingServer, http: aiohttp.ClientSession, clock: StepClock
) -> None:
    doomed = await create(http, emu, prompt="please FAIL now")
    other = await create(http, emu)
    clock.advance(10)
    _, reply = await call(http, "GET", f"{emu.url}{T2V}/{doomed}")
    assert reply["data"]["task_status"] == "failed"
    assert reply["data"]["task_status_msg"] == "content risk control"
    assert reply["data"]["task_result"] == {"videos": []}

    emu.set_status(other, "failed", msg="internal error")
    _, reply = await call(http, "GET", f"{emu.url}{T2V}/{other}")
    assert (reply["data"]["task_status"], reply["data"]["task_status_msg"]) == (
        "failed",
        "internal error",
    )
    emu.set_status(other, "processing")
    assert emu.status_of(other) == "processing"
    assert emu.tasks[other].body["prompt"] == "a cat"


async def test_random_failures_are_seeded(http: aiohttp.ClientSession, clock: StepClock) -> None:
    outcomes = []
    for _ in range(2):
        timeline = Timeline(queue_seconds=0, processing_seconds=0, fail_rate=0.5, seed=7)
        async with FakeKlingServer(api_key=KEY, timeline=timeline, clock=clock) as server:
            ids = [await create(http, server) for _ in range(8)]
            outcomes.append([server.status_of(i) for i in ids])
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {"succeed", "failed"}


async def test_processing_seconds_callable(http: aiohttp.ClientSession, clock: StepClock) -> None:
    def by_duration(task: Any) -> float:
        return 100.0 if task.body.get("duration") == "10" else 1.0

    timeline = Timeline(queue_seconds=0, processing_seconds=by_duration)
    async with FakeKlingServer(api_key=KEY, timeline=timeline, clock=clock) as server:
        short = await create(http, server, duration="5")
        long = await create(http, server, duration="10")
        clock.advance(2)
        assert (server.status_of(short), server.status_of(long)) == ("succeed", "processing")


async def test_image2video_kind_and_path_isolation(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    task_id = await create(http, emu, I2V, image="https://example.com/cat.png")
    status, reply = await call(http, "GET", f"{emu.url}{I2V}/{task_id}")
    assert status == 200
    assert reply["data"]["task_id"] == task_id
    # A task is only found under the path of the endpoint that created it.
    status, reply = await call(http, "GET", f"{emu.url}{COMET_T2V}/{task_id}")
    assert (status, reply["code"]) == (404, 1203)


async def test_extra_kind_is_data_driven(http: aiohttp.ClientSession) -> None:
    omni = KindSpec("omni-video", "videos/omni-video", "OMNI_VIDEO", validate_lenient)
    async with FakeKlingServer(api_key=KEY, kinds=(*DEFAULT_KINDS, omni)) as server:
        task_id = await create(http, server, "/kling/v1/videos/omni-video")
        status, _ = await call(http, "GET", f"{server.url}/v1/videos/omni-video/{task_id}")
        assert status == 200


# -- validation ------------------------------------------------------------------------------

_CAMERA_OK = {"type": "simple", "config": {"zoom": 5}}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (T2V, {}, "prompt"),
        (T2V, {"prompt": ""}, "prompt"),
        (T2V, {"prompt": 42}, "prompt"),
        (T2V, {"prompt": "x" * 2501}, "prompt"),
        (T2V, {"prompt": "a", "negative_prompt": "x" * 2501}, "negative_prompt"),
        (T2V, {"prompt": "a", "mode": "standard"}, "mode"),
        (T2V, {"prompt": "a", "duration": 5}, "duration"),
        (T2V, {"prompt": "a", "duration": "7"}, "duration"),
        (T2V, {"prompt": "a", "aspect_ratio": "4:3"}, "aspect_ratio"),
        (T2V, {"prompt": "a", "cfg_scale": 1.5}, "cfg_scale"),
        (T2V, {"prompt": "a", "cfg_scale": "0.5"}, "cfg_scale"),
        (T2V, {"prompt": "a", "camera_control": {"type": "orbit"}}, "camera_control.type"),
        (T2V, {"prompt": "a", "camera_control": {"type": "simple"}}, "camera_control.config"),
        (
            T2V,
            {"prompt": "a", "camera_control": {"type": "simple", "config": {"pan": 1, "zoom": 2}}},
            "camera_control.config",
        ),
        (
            T2V,
            {"prompt": "a", "camera_control": {"type": "simple", "config": {"zoom": 0}}},
            "camera_control.config",
        ),
        (
            T2V,
            {"prompt": "a", "camera_control": {"type": "simple", "config": {"roll": 11}}},
            "camera_control.config.roll",
        ),
        (
            T2V,
            {"prompt": "a", "camera_control": {"type": "down_back", "config": {"zoom": 1}}},
            "camera_control.config",
        ),
        (I2V, {"prompt": "a"}, "image"),
        (I2V, {"image": "data:image/png;base64,AAAA"}, "image"),
        (I2V, {"image": "AAAA", "image_tail": "data:image/png;base64,AAAA"}, "image_tail"),
        (I2V, {"image": "AAAA", "image_tail": "BBBB", "camera_control": _CAMERA_OK}, "image_tail"),
    ],
)
async def test_validation_errors_name_the_field(
    emu: FakeKlingServer, http: aiohttp.ClientSession, path: str, body: Any, field: str
) -> None:
    status, reply = await call(http, "POST", emu.url + path, json=body)
    assert status == 400
    assert reply["code"] == 1201
    assert reply["message"].startswith(field + ":"), reply["message"]
    assert not emu.tasks


@pytest.mark.parametrize(
    "extra",
    [
        {"camera_control": _CAMERA_OK},
        {"camera_control": {"type": "forward_up"}},
        {"camera_control": {"type": "left_turn_forward", "config": None}},
        {"mode": "pro", "duration": "10", "aspect_ratio": "9:16", "cfg_scale": 0},
        {"some_future_field": {"nested": True}, "model_name": "kling-v2-6"},
    ],
)
async def test_valid_bodies_are_accepted(
    emu: FakeKlingServer, http: aiohttp.ClientSession, extra: dict[str, Any]
) -> None:
    await create(http, emu, **extra)


async def test_validation_is_configurable(http: aiohttp.ClientSession) -> None:
    rules = Validation(prompt_max=500, durations=("5",), extra_aspect_ratios=("4:3",))
    async with FakeKlingServer(api_key=KEY, validation=rules) as server:
        await create(http, server, aspect_ratio="4:3")
        for body in ({"prompt": "x" * 501}, {"prompt": "a", "duration": "10"}):
            status, reply = await call(http, "POST", server.url + T2V, json=body)
            assert (status, reply["code"]) == (400, 1201)


async def test_non_json_body_is_rejected(emu: FakeKlingServer, http: aiohttp.ClientSession) -> None:
    async with http.post(emu.url + T2V, data=b"{not json", headers=AUTH) as response:
        assert response.status == 400
        assert (await response.json())["code"] == 1200


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 1001),
        ({"Authorization": ""}, 1001),
        ({"Authorization": "Bearer wrong-key"}, 1002),
        ({"Authorization": f"Token {KEY}"}, 1002),
        ({"Authorization": KEY}, 1002),
    ],
)
async def test_auth_failures(
    emu: FakeKlingServer, http: aiohttp.ClientSession, headers: dict[str, str], code: int
) -> None:
    status, reply = await call(http, "POST", emu.url + T2V, json={"prompt": "a"}, headers=headers)
    assert (status, reply["code"]) == (401, code)
    assert not emu.tasks


async def test_gateway_auth_errors(http: aiohttp.ClientSession) -> None:
    async with FakeKlingServer(api_key=KEY, gateway_errors=True) as server:
        headers = {"Authorization": "Bearer nope"}
        status, reply = await call(http, "GET", f"{server.url}{COMET_T2V}/1", headers=headers)
    assert status == 401
    assert reply["error"]["type"] == "comet_api_error"
    assert reply["error"]["code"] == ""
    assert "(request id: " in reply["error"]["message"]


async def test_jwt_auth(http: aiohttp.ClientSession, clock: StepClock) -> None:
    async with FakeKlingServer(
        api_key=None, access_key="ak", secret_key="sk", clock=clock
    ) as server:
        now = server.wall_time()

        async def status_with(token: str) -> tuple[int, int]:
            headers = {"Authorization": f"Bearer {token}"}
            status, reply = await call(
                http, "POST", server.url + T2V, json={"prompt": "a"}, headers=headers
            )
            return status, reply["code"]

        assert await status_with(encode_jwt("ak", "sk", now=now)) == (200, 0)
        assert await status_with(encode_jwt("ak", "sk", now=now - 3600)) == (401, 1004)
        assert await status_with(encode_jwt("ak", "sk", now=now + 60)) == (401, 1003)
        assert await status_with(encode_jwt("ak", "wrong", now=now)) == (401, 1002)
        assert await status_with(encode_jwt("other", "sk", now=now)) == (401, 1002)
        assert await status_with("a.b.c") == (401, 1002)
        token = encode_jwt("ak", "sk", now=now, lifetime=10)
        assert await status_with(token) == (200, 0)
        clock.advance(11)  # the server checks exp on its own (injected) clock
        assert await status_with(token) == (401, 1004)


# -- limits ----------------------------------------------------------------------------------


async def test_task_slot_limit(
    emu: FakeKlingServer, http: aiohttp.ClientSession, clock: StepClock
) -> None:
    emu.max_active_tasks = 2
    first = await create(http, emu)
    await create(http, emu)
    status, reply = await call(http, "POST", emu.url + T2V, json={"prompt": "a"})
    assert (status, reply["code"]) == (429, 1303)
    assert reply["message"] == "parallel task over resource pack limit"
    # Queries do not use slots.
    status, _ = await call(http, "GET", f"{emu.url}{T2V}/{first}")
    assert status == 200
    emu.set_status(first, "succeed")
    await create(http, emu)
    clock.advance(100)  # the timeline finishes the rest
    await create(http, emu)
    await create(http, emu)
    assert emu.stats.codes[1303] == 1


async def test_rate_limit(http: aiohttp.ClientSession, clock: StepClock) -> None:
    async with FakeKlingServer(
        api_key=KEY, rate_limit=2.0, rate_burst=2, rate_limit_retry_after=True, clock=clock
    ) as server:
        url = f"{server.url}{T2V}?pageSize=1"
        assert (await call(http, "GET", url))[0] == 200
        assert (await call(http, "GET", url))[0] == 200
        async with http.get(url, headers=AUTH) as response:
            assert response.status == 429
            assert (await response.json())["code"] == 1302
            assert response.headers["Retry-After"] == "1"
        clock.advance(0.5)  # one token back at 2/s
        assert (await call(http, "GET", url))[0] == 200
        assert (await call(http, "GET", url))[0] == 429
        assert server.stats.codes[1302] == 2


async def test_rate_limit_sends_no_retry_after_by_default(
    http: aiohttp.ClientSession, clock: StepClock
) -> None:
    async with FakeKlingServer(api_key=KEY, rate_limit=1.0, clock=clock) as server:
        await call(http, "GET", server.url + T2V)
        async with http.get(server.url + T2V, headers=AUTH) as response:
            assert response.status == 429
            assert "Retry-After" not in response.headers


# -- external ids, lists ---------------------------------------------------------------------


async def test_external_task_id_queries_and_uniqueness(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    task_id = await create(http, emu, external_task_id="job-7")
    for url in (
        f"{emu.url}{T2V}/job-7",
        f"{emu.url}{COMET_T2V}?external_task_id=job-7",
        f"{emu.url}{T2V}/job-7?external_task_id=true",
    ):
        status, reply = await call(http, "GET", url)
        assert status == 200, url
        assert reply["data"]["task_id"] == task_id
        assert reply["data"]["task_info"]["external_task_id"] == "job-7"
    status, reply = await call(http, "GET", f"{emu.url}{T2V}?external_task_id=nope")
    assert (status, reply["code"]) == (404, 1203)

    status, reply = await call(
        http, "POST", emu.url + COMET_T2V, json={"prompt": "b", "external_task_id": "job-7"}
    )
    assert (status, reply["code"]) == (400, 1201)
    assert "external_task_id already exists" in reply["message"]
    assert emu.create_counts == {"job-7": 1}
    assert emu.create_attempts == {"job-7": 2}
    task = emu.task_by_external_id("job-7")
    assert task is not None
    assert task.task_id == task_id


async def test_unknown_task_is_404(emu: FakeKlingServer, http: aiohttp.ClientSession) -> None:
    status, reply = await call(http, "GET", f"{emu.url}{T2V}/123456789012345678")
    assert (status, reply["code"]) == (404, 1203)


async def test_list_endpoint(emu: FakeKlingServer, http: aiohttp.ClientSession) -> None:
    ids = [await create(http, emu, prompt=f"p{i}") for i in range(5)]
    await create(http, emu, I2V, image="AAAA")
    status, reply = await call(http, "GET", f"{emu.url}{T2V}?pageNum=1&pageSize=2")
    assert status == 200
    assert [t["task_id"] for t in reply["data"]] == ids[::-1][:2]
    _, reply = await call(http, "GET", f"{emu.url}{COMET_T2V}?pageNum=3&pageSize=2")
    assert [t["task_id"] for t in reply["data"]] == ids[:1]
    _, reply = await call(http, "GET", f"{emu.url}{T2V}")
    assert len(reply["data"]) == 5
    assert {"task_status", "task_result", "created_at"} <= set(reply["data"][0])
    for query in ("pageSize=501", "pageSize=0", "pageNum=0", "pageSize=abc"):
        status, reply = await call(http, "GET", f"{emu.url}{T2V}?{query}")
        assert (status, reply["code"]) == (400, 1201), query


# -- faults ----------------------------------------------------------------------------------


async def test_drop_after_create_leaves_a_task(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    emu.faults.next_create("drop_after_create")
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await call(http, "POST", emu.url + T2V, json={"prompt": "a", "external_task_id": "amb"})
    task = emu.task_by_external_id("amb")
    assert task is not None
    assert emu.create_counts["amb"] == 1
    # The client can reconcile by external id.
    status, reply = await call(http, "GET", f"{emu.url}{T2V}/amb")
    assert (status, reply["data"]["task_id"]) == (200, task.task_id)
    assert emu.stats.faults["drop_after_create"] == 1


async def test_drop_before_create_leaves_nothing(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    emu.faults.next_create("drop_before_create")
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await call(http, "POST", emu.url + T2V, json={"prompt": "a", "external_task_id": "x"})
    assert emu.task_by_external_id("x") is None
    assert not emu.tasks
    assert emu.faults.pending() == 0
    await create(http, emu, external_task_id="x")  # the next create is unaffected


@pytest.mark.parametrize(
    ("fault", "status", "code"), [("500", 500, 5000), ("503", 503, 5001), ("504", 504, 5002)]
)
async def test_error_faults(
    emu: FakeKlingServer,
    http: aiohttp.ClientSession,
    fault: Any,
    status: int,
    code: int,
) -> None:
    emu.faults.next_request(fault, times=2)
    for _ in range(2):
        got, reply = await call(http, "GET", f"{emu.url}{T2V}?pageSize=1")
        assert (got, reply["code"]) == (status, code)
    assert (await call(http, "GET", f"{emu.url}{T2V}?pageSize=1"))[0] == 200
    assert emu.stats.server_errors == 2


async def test_route_queues_come_before_the_shared_queue(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    emu.faults.next_request("503")
    emu.faults.next_query("500")
    status, _ = await call(http, "GET", f"{emu.url}{T2V}/1")
    assert status == 500  # query queue first
    status, _ = await call(http, "GET", f"{emu.url}{T2V}/1")
    assert status == 503  # then the shared queue
    with pytest.raises(ValueError, match="does not apply"):
        emu.faults.next_create("cut_download")


async def test_malformed_bodies(emu: FakeKlingServer, http: aiohttp.ClientSession) -> None:
    emu.faults.next_create("malformed_text")
    async with http.post(emu.url + T2V, json={"prompt": "a"}, headers=AUTH) as response:
        assert response.status == 200
        with pytest.raises(ValueError):
            await response.json(content_type=None)
    assert len(emu.tasks) == 1  # the create itself went through

    emu.faults.next_query("malformed_no_data")
    emu.faults.next_query("malformed_types")
    _, reply = await call(http, "GET", f"{emu.url}{T2V}/1")
    assert reply["code"] == 0
    assert "data" not in reply
    _, reply = await call(http, "GET", f"{emu.url}{T2V}/1")
    assert isinstance(reply["data"]["task_id"], int)
    assert not isinstance(reply["data"]["task_result"], dict)


async def test_slow_fault_answers_late_but_correctly(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    emu.faults.next_create("slow", seconds=0.05)
    await create(http, emu)
    assert emu.stats.faults["slow"] == 1


async def test_random_faults_are_seeded(http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        faults = Faults(rate=0.5, kinds=("500", "503"), seed=3)
        async with FakeKlingServer(api_key=KEY, faults=faults) as server:
            runs.append([(await call(http, "GET", server.url + T2V))[0] for _ in range(12)])
    assert runs[0] == runs[1]
    assert {200, 500, 503} <= set(runs[0])


# -- callbacks -------------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A tiny callback receiver on 127.0.0.1; yields its URL and the bodies it got."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()


async def test_callbacks_follow_the_lifecycle(
    emu: FakeKlingServer,
    http: aiohttp.ClientSession,
    clock: StepClock,
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = receiver
    task_id = await create(http, emu, callback_url=url, external_task_id="cb-1")
    await eventually(lambda: len(received) == 1)
    clock.advance(2)
    await eventually(lambda: len(received) == 2)
    clock.advance(10)
    await eventually(lambda: len(received) == 3)
    assert [body["task_status"] for body in received] == ["submitted", "processing", "succeed"]
    final = received[-1]
    assert "code" not in final  # bare task object, not the envelope
    assert final["task_id"] == task_id
    assert final["task_info"]["external_task_id"] == "cb-1"
    assert final["task_result"]["videos"][0]["url"].startswith(emu.cdn_url)
    assert all(record.status == 200 for record in emu.callbacks)


async def test_callbacks_new_style_duplicates_and_drops(
    http: aiohttp.ClientSession, clock: StepClock, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    timeline = Timeline(queue_seconds=0, processing_seconds=0)
    async with FakeKlingServer(
        api_key=KEY,
        timeline=timeline,
        clock=clock,
        callback_style="new",
        callback_duplicate_rate=1.0,
    ) as server:
        await create(http, server, callback_url=url, external_task_id="n1")
        await eventually(lambda: len(received) == 2)
        assert received[0] == received[1]
        assert received[0]["status"] == "succeeded"
        assert received[0]["external_id"] == "n1"
        assert received[0]["outputs"][0]["type"] == "video"

        server.callback_drop_rate = 1.0
        task_id = await create(http, server, callback_url=url)
        await eventually(lambda: any(r.dropped for r in server.callbacks))
        assert all(body.get("id") != task_id for body in received)


async def test_callbacks_to_other_hosts_are_refused(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    await create(http, emu, callback_url="http://example.invalid/hook")
    await eventually(lambda: len(emu.callbacks) == 1)
    assert emu.callbacks[0].error is not None
    assert "refused" in emu.callbacks[0].error


async def test_unreachable_callback_is_logged_and_ignored(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    # Port 9 (discard) on loopback is almost certainly closed: the delivery fails fast.
    await create(http, emu, callback_url="http://127.0.0.1:9/hook")
    await eventually(lambda: len(emu.callbacks) == 1)
    assert emu.callbacks[0].error is not None
    await create(http, emu)  # the server carries on


# -- CDN -------------------------------------------------------------------------------------


async def finished_video(
    emu: FakeKlingServer, http: aiohttp.ClientSession, **body: Any
) -> tuple[str, dict[str, Any]]:
    """Create a task, force it to succeed and return (task_id, its video object)."""
    task_id = await create(http, emu, **body)
    emu.set_status(task_id, "succeed")
    _, reply = await call(http, "GET", f"{emu.url}{T2V}/{task_id}")
    video: dict[str, Any] = reply["data"]["task_result"]["videos"][0]
    return task_id, video


async def test_cdn_serves_mp4_with_ranges(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    task_id, video = await finished_video(emu, http)
    async with http.get(video["url"]) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "video/mp4"
        body = await response.read()
        assert int(response.headers["Content-Length"]) == len(body)
    assert body == emu.video_bytes(task_id)
    assert body[4:8] == b"ftyp"
    assert b"moov" in body
    assert b"mvhd" in body
    assert b"mdat" in body
    async with http.get(video["url"], headers={"Range": "bytes=100-"}) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 100-{len(body) - 1}/{len(body)}"
        assert await response.read() == body[100:]
    async with http.get(video["url"], headers={"Range": f"bytes={len(body)}-"}) as response:
        assert response.status == 416
    async with http.get(video["watermark_url"]) as response:
        watermarked = await response.read()
    assert watermarked != body
    _, other = await finished_video(emu, http)
    async with http.get(other["url"]) as response:
        assert await response.read() != body
    # The API key was never sent to the CDN.
    assert all(record.header("Authorization") is None for record in emu.requests_to("cdn"))


async def test_cdn_rejects_and_records_auth_headers(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    _, video = await finished_video(emu, http)
    async with http.get(video["url"], headers=AUTH) as response:
        assert response.status == 403
    [record] = emu.requests_to("cdn")
    assert record.header("authorization") == f"Bearer {KEY}"
    assert record.route == "video"
    assert sum(emu.stats.cdn_auth_rejections.values()) == 1


async def test_video_url_expiry(emu: FakeKlingServer, http: aiohttp.ClientSession) -> None:
    task_id, video = await finished_video(emu, http)
    new_url, _ = emu.expire_video_urls(task_id)
    async with http.get(video["url"]) as response:
        assert response.status == 403
    _, reply = await call(http, "GET", f"{emu.url}{T2V}/{task_id}")
    fresh = reply["data"]["task_result"]["videos"][0]["url"]
    assert fresh == new_url
    assert fresh != video["url"]
    assert fresh.endswith("?v=2")
    async with http.get(fresh) as response:
        assert response.status == 200
        assert await response.read() == emu.video_bytes(task_id)


async def test_cut_download_then_resume(emu: FakeKlingServer, http: aiohttp.ClientSession) -> None:
    task_id, video = await finished_video(emu, http)
    full = emu.video_bytes(task_id)
    emu.faults.next_download("cut_download")
    got = bytearray()

    async def download() -> None:
        async with http.get(video["url"]) as response:
            assert response.headers["Content-Length"] == str(len(full))
            async for chunk in response.content.iter_any():
                got.extend(chunk)

    with pytest.raises(aiohttp.ClientPayloadError):
        await download()
    assert 0 < len(got) < len(full)
    async with http.get(video["url"], headers={"Range": f"bytes={len(got)}-"}) as response:
        assert response.status == 206
        got.extend(await response.read())
    assert bytes(got) == full


async def test_unfinished_task_has_no_video(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    task_id = await create(http, emu)
    video_id = emu.tasks[task_id].video_id
    async with http.get(f"{emu.cdn_url}/videos/{video_id}.mp4") as response:
        assert response.status == 404


# -- response shapes, records, stats ---------------------------------------------------------


async def test_wrapped_queries_and_seconds(http: aiohttp.ClientSession, clock: StepClock) -> None:
    async with FakeKlingServer(
        api_key=KEY,
        wrap_queries=True,
        timestamps_in_seconds=True,
        clock=clock,
        timeline=Timeline(queue_seconds=1, processing_seconds=4),
    ) as server:
        _, reply = await call(
            http, "POST", server.url + COMET_T2V, json={"prompt": "a", "external_task_id": "w"}
        )
        assert reply["data"]["created_at"] < 10_000_000_000  # seconds
        task_id = reply["data"]["task_id"]
        clock.advance(3)
        _, reply = await call(http, "GET", f"{server.url}{COMET_T2V}/{task_id}")
        assert reply["code"] == "success"
        data = reply["data"]
        assert (data["action"], data["status"]) == ("TEXT2VIDEO", "IN_PROGRESS")
        assert data["progress"].endswith("%")
        assert data["data"]["task_status"] == "processing"
        clock.advance(3)
        _, reply = await call(http, "GET", f"{server.url}{COMET_T2V}/{task_id}")
        assert (reply["data"]["status"], reply["data"]["progress"]) == ("SUCCESS", "100%")
        assert reply["data"]["data"]["task_result"]["videos"]
        server.set_status(task_id, "failed", msg="boom")
        _, reply = await call(http, "GET", f"{server.url}{COMET_T2V}/{task_id}")
        assert (reply["data"]["status"], reply["data"]["fail_reason"]) == ("FAILURE", "boom")


async def test_requests_and_stats_are_recorded(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    task_id = await create(http, emu)
    await call(http, "GET", f"{emu.url}{T2V}/{task_id}")
    await call(http, "GET", f"{emu.url}{T2V}?pageSize=3")
    await call(http, "GET", f"{emu.url}/v1/nowhere")
    methods = [(r.method, r.route) for r in emu.requests_to("api")]
    assert methods == [("POST", "create"), ("GET", "query"), ("GET", "list"), ("GET", "other")]
    assert emu.requests[0].header("authorization") == f"Bearer {KEY}"
    assert emu.requests[2].query == {"pageSize": "3"}
    assert emu.stats.routes["create"] == 1
    assert emu.stats.codes[0] == 3
    assert emu.stats.codes[1202] == 1
    assert emu.stats.http_statuses[200] == 3


async def test_clean_shutdown_leaves_no_tasks() -> None:
    before = asyncio.all_tasks()
    server = FakeKlingServer(api_key=KEY)
    async with server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.cdn_url != server.url
    assert asyncio.all_tasks() == before
    await server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = FakeKlingServer().url
    with pytest.raises(ValueError, match="loopback"):
        FakeKlingServer(host="0.0.0.0")  # noqa: S104


async def test_command_line_prints_url_first(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kling_async.testing",
        "--port",
        "0",
        "--api-key",
        KEY,
        "--queue-seconds",
        "0",
        "--processing-seconds",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
        url = line.decode().strip()
        assert url.startswith("http://127.0.0.1:")
        status, reply = await call(http, "POST", url + T2V, json={"prompt": "a"})
        assert (status, reply["code"]) == (200, 0)
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), timeout=20)
    assert process.returncode == 0


async def test_create_answer_delay_holds_a_recorded_create(
    emu: FakeKlingServer, http: aiohttp.ClientSession
) -> None:
    """With ``create_answer_delay``, the task exists on the server before the client hears of it."""
    emu.faults.config = Faults(create_answer_delay=0.5)
    answer = asyncio.ensure_future(
        call(http, "POST", emu.url + COMET_T2V, json={"prompt": "held", "external_task_id": "h1"})
    )
    try:
        for _ in range(200):  # until the create is recorded (well within the 0.5 s hold)
            if emu.task_by_external_id("h1") is not None:
                break
            await asyncio.sleep(0.005)
        assert emu.task_by_external_id("h1") is not None
        assert not answer.done()  # recorded, not yet answered
        status, reply = await answer
    finally:
        answer.cancel()
    assert status == 200
    assert reply["data"]["task_id"] == emu.task_by_external_id("h1").task_id  # type: ignore[union-attr]
