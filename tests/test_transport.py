"""Narrow transport faults with aioresponses: how failures are classified and retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from aioresponses import aioresponses

import kling_async as kling

BASE = "http://127.0.0.1:9"
CREATE = f"{BASE}/kling/v1/videos/text2video"
TASK = {"task_id": "1", "task_status": "submitted", "task_info": {"external_task_id": "e1"}}


class RecordingClock:
    """Records requested sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.value = 0.0

    def now(self) -> float:
        return self.value

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.value += seconds
        await asyncio.sleep(0)

    def deadline(self, seconds: float | None) -> anyio.CancelScope:
        # Deadlines here are never reached: only the retry waits matter to these tests.
        return anyio.CancelScope()


@pytest.fixture
def clock() -> RecordingClock:
    return RecordingClock()


@pytest.fixture
async def client(clock: RecordingClock) -> AsyncIterator[kling.KlingClient]:
    provider = kling.Provider(
        name="mocked", base_url=BASE, prefix="/kling/v1", trust_not_found=True
    )
    async with kling.KlingClient(
        api_key="sk-unit",
        provider=provider,
        retry=kling.RetryPolicy(base=1.0, cap=8.0, jitter=0.0, max_retries=3),
        rate=None,
        clock=clock,
    ) as running:
        yield running


def ok(data: object) -> dict[str, object]:
    return {"code": 0, "message": "SUCCEED", "request_id": "r", "data": data}


async def test_connect_failure_is_not_ambiguous(
    client: kling.KlingClient, clock: RecordingClock
) -> None:
    """A refused connection never reached the server: the create is simply retried, no look-up."""
    with aioresponses() as mocked:
        mocked.post(CREATE, exception=aiohttp.ClientConnectorError(None, OSError(111, "refused")))  # type: ignore[arg-type]
        mocked.post(CREATE, payload=ok(TASK))
        task = await client.submit(kling.TextToVideo(prompt="x", external_task_id="e1"))
    assert task.id == "1"
    assert clock.sleeps == [1.0]
    gets = [key for key in mocked.requests if key[0] == "GET"]
    assert gets == []


async def test_disconnect_after_send_looks_up_first(client: kling.KlingClient) -> None:
    """A dropped connection after sending may have created the task: look it up, adopt it."""
    with aioresponses() as mocked:
        mocked.post(CREATE, exception=aiohttp.ServerDisconnectedError())
        mocked.get(f"{CREATE}/e1", payload=ok({**TASK, "task_status": "processing"}))
        task = await client.submit(kling.TextToVideo(prompt="x", external_task_id="e1"))
    assert task.status is kling.TaskStatus.PROCESSING
    posts = [key for key in mocked.requests if key[0] == "POST"]
    assert len(posts) == 1
    assert len(mocked.requests[posts[0]]) == 1


async def test_timeout_is_typed(client: kling.KlingClient) -> None:
    """A read timeout becomes APITimeoutError (retried for reads, then raised)."""
    with aioresponses() as mocked:
        for _ in range(4):
            mocked.get(f"{CREATE}/1", exception=asyncio.TimeoutError())
        with pytest.raises(kling.APITimeoutError) as info:
            await client.get_task("1")
    assert info.value.maybe_sent


async def test_retry_after_is_honoured(client: kling.KlingClient, clock: RecordingClock) -> None:
    """A 503 with Retry-After waits exactly that long before the retry."""
    with aioresponses() as mocked:
        mocked.get(
            f"{CREATE}/1",
            status=503,
            payload={"code": 5001, "message": "maintenance"},
            headers={"Retry-After": "3"},
        )
        mocked.get(f"{CREATE}/1", payload=ok(TASK))
        task = await client.get_task("1")
    assert task.id == "1"
    assert clock.sleeps == [3.0]


async def test_backoff_schedule_on_server_errors(
    client: kling.KlingClient, clock: RecordingClock
) -> None:
    """Exponential back-off between retries, then the last error is raised."""
    with aioresponses() as mocked:
        for _ in range(4):
            mocked.get(f"{CREATE}/1", status=500, payload={"code": 5000, "message": "boom"})
        with pytest.raises(kling.ServerError):
            await client.get_task("1")
    assert clock.sleeps == [1.0, 2.0, 4.0]


async def test_request_errors_are_never_retried(
    client: kling.KlingClient, clock: RecordingClock
) -> None:
    """A 400/1201 is final: one request, no sleep."""
    with aioresponses() as mocked:
        mocked.get(f"{CREATE}/1", status=400, payload={"code": 1201, "message": "bad"})
        with pytest.raises(kling.BadRequestError):
            await client.get_task("1")
    assert clock.sleeps == []


async def test_unlimited_client_still_backs_off_on_429(
    client: kling.KlingClient, clock: RecordingClock
) -> None:
    """With no rate limiter a 429 still waits before retrying."""
    with aioresponses() as mocked:
        mocked.get(f"{CREATE}/1", status=429, payload={"code": 1302, "message": "too fast"})
        mocked.get(f"{CREATE}/1", payload=ok(TASK))
        await client.get_task("1")
    assert clock.sleeps == [1.0]


async def test_parsed_urls_are_reused_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A status check asks for the same URL again and again: aiohttp gets the URL parsed the
    last time, and the cache of parsed URLs stays bounded however many tasks pass through."""
    from kling_async import transport as transport_module

    monkeypatch.setattr(transport_module, "_PARSED_URLS", 8)
    transport = transport_module.AiohttpTransport()
    sent: list[object] = []
    real_request = aiohttp.ClientSession.request

    def spy(self: aiohttp.ClientSession, method: str, url: object, **kwargs: object) -> object:
        sent.append(url)
        return real_request(self, method, url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aiohttp.ClientSession, "request", spy)
    urls = [f"{BASE}/t/{index % 10}" for index in range(30)] + [f"{BASE}/t/9"]
    try:
        with aioresponses() as mocked:
            for url in urls:
                mocked.get(url, payload=ok(TASK))
            for url in urls:
                raw = await transport.request("GET", url, headers={})
                assert raw.status == 200
                assert len(transport._urls) <= 8
    finally:
        await transport.aclose()
    assert [str(url) for url in sent] == urls
    assert sent[-1] is sent[-2]  # asked for twice in a row: parsed once


async def test_an_unparseable_url_is_still_an_invalid_url_error() -> None:
    from kling_async.transport import AiohttpTransport, InvalidURLError

    transport = AiohttpTransport()
    try:
        with pytest.raises(InvalidURLError):
            await transport.request("GET", "http://[::1/t/1", headers={})
        assert transport._urls == {}
    finally:
        await transport.aclose()


async def test_the_transport_sends_the_headers_it_is_given_each_time() -> None:
    """The transport keeps aiohttp's form of the last headers it was passed: a different
    mapping (a new JWT, a download's own headers) must be sent as it is, not the kept one."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from kling_async.transport import AiohttpTransport

    seen: list[str | None] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"code": 0, "data": {}})

    app = web.Application()
    app.router.add_get("/x", echo)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    transport = AiohttpTransport()
    try:
        url = str(server.make_url("/x"))
        first, second = {"Authorization": "Bearer one"}, {"Authorization": "Bearer two"}
        for headers in (first, first, second, first):
            await transport.request("GET", url, headers=headers)
    finally:
        await transport.aclose()
        await server.close()
    assert seen == ["Bearer one", "Bearer one", "Bearer two", "Bearer one"]
