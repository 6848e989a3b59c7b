"""examples/fastapi_app.py served for real by uvicorn on 127.0.0.1, fed by the emulator's callbacks."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import uvicorn

import kling_async as kling
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.webhooks import WebhookReceiver

from .conftest import API_KEY, FAST_RETRY

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"
TOKEN = "example-token-0123456789"
SLOW_POLL = kling.PollPolicy(
    first_delay=30, min_interval=30, max_interval=60, callback_interval=30, jitter=0
)
"""Only callbacks can explain a task finishing during the test."""


def load_example() -> ModuleType:
    """Import the example module from its file (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.asynccontextmanager
async def serving(kling_server: FakeKlingServer, **options: Any) -> AsyncIterator[str]:
    """Run the example app with uvicorn on a free 127.0.0.1 port; yield its base URL.

    *options* go to ``create_app``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"

    def client_factory(receiver: WebhookReceiver) -> kling.KlingClient:
        return kling.KlingClient(
            webhook=receiver,
            api_key=API_KEY,
            provider=kling.local_emulator(kling_server.url),
            retry=FAST_RETRY,
            poll=SLOW_POLL,
            timeout=5.0,
        )

    app = load_example().create_app(
        public_url=base, client_factory=client_factory, token=TOKEN, **options
    )
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", ws="none", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to await
                    await anyio.sleep(0.01)
            try:
                yield base
            finally:
                server.should_exit = True
    finally:
        sock.close()


async def read_events(http: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    """Read *count* ``finished`` events from ``GET /events``."""
    async with http.stream("GET", "/events", params={"limit": count}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [
            json.loads(line.removeprefix("data: "))
            async for line in response.aiter_lines()
            if line.startswith("data: ")
        ]


async def test_submit_callback_and_event_stream() -> None:
    """POST /videos → the emulator's callbacks reach the app → GET /events streams the task."""
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.2)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as kling_server,
        serving(kling_server) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        answer = await http.post("/videos", json={"prompt": "A beach at sunset"})
        assert answer.status_code == 202
        task_id = answer.json()["task_id"]
        assert kling_server.tasks[task_id].callback_url == f"{base}/kling/callback?token={TOKEN}"

        with anyio.fail_after(10):
            events = await read_events(http, 1)
        assert [event["task_id"] for event in events] == [task_id]
        assert events[0]["status"] == "succeed"
        assert events[0]["videos"]

        # A late subscriber gets the history; Last-Event-ID skips what it already saw.
        with anyio.fail_after(10):
            assert [event["task_id"] for event in await read_events(http, 1)] == [task_id]
        second = await http.post("/videos", json={"prompt": "A forest in fog"})
        with anyio.fail_after(10):
            async with http.stream(
                "GET", "/events", params={"limit": 1}, headers={"Last-Event-ID": "1"}
            ) as response:
                lines = [line async for line in response.aiter_lines()]
        assert f'"task_id": "{second.json()["task_id"]}"' in "\n".join(lines)
        assert "id: 2" in lines

        delivered = [record for record in kling_server.callbacks if record.status is not None]
        assert delivered
        assert all(record.status == 200 for record in delivered)
        # Polling is 30 s apart: each task was checked once, right after its callback (a GET,
        # or a list request where the provider lists tasks, as the emulator does).
        assert kling_server.stats.routes["query"] + kling_server.stats.routes["list"] == 2


async def test_routes_refuse_bad_input() -> None:
    """Invalid requests get 422; forged callbacks get 4xx and change nothing."""
    async with (
        FakeKlingServer(api_key=API_KEY) as kling_server,
        serving(kling_server) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        assert (await http.post("/videos", json={"prompt": ""})).status_code == 422
        too_long = await http.post("/videos", json={"prompt": "x" * 3000})
        assert too_long.status_code == 422
        assert "prompt" in too_long.text
        forged = {"task_id": "1", "task_status": "succeed"}
        assert (await http.post("/kling/callback", json=forged)).status_code == 401
        wrong = await http.post("/kling/callback", params={"token": "x" * 20}, json=forged)
        assert wrong.status_code == 403
        ok = await http.post("/kling/callback", params={"token": TOKEN}, json=forged)
        assert ok.status_code == 200
        assert (await http.get("/kling/callback")).status_code == 405
        assert kling_server.tasks == {}
