"""examples/fastapi_fleet.py under ``uvicorn --workers 2``: two processes, one account, no 1303."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from kling_async.testing import FakeKlingServer, Timeline

from .conftest import API_KEY
from .redis_support import RedisServer, fresh_account, requires_redis, shared_url

pytestmark = [pytest.mark.timeout(120), requires_redis]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def redis_url() -> Iterator[str]:
    """``$REDIS_URL`` or a redis-server of this test."""
    server = RedisServer().start()
    try:
        yield shared_url(server)
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_two_uvicorn_workers_share_the_task_slots(redis_url: str) -> None:
    """12 videos through 2 workers of an app limited to 3 slots: no create meets a 1303."""
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.3)
    async with FakeKlingServer(api_key=API_KEY, timeline=timeline, max_active_tasks=3) as server:
        port = _free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "COMETAPI_KEY": API_KEY,
            "KLING_BASE_URL": server.url,
            "KLING_EMULATOR": "1",
            "REDIS_URL": redis_url,
            "KLING_ACCOUNT": fresh_account(),
            "KLING_MAX_ACTIVE": "3",
        }
        process = await anyio.open_process(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.fastapi_fleet:app",
                "--workers",
                "2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            # Both workers up: each probe on a new connection, until two process ids answered.
            deadline = time.monotonic() + 60
            started: set[int] = set()
            while len(started) < 2:
                assert time.monotonic() < deadline, "uvicorn's workers did not start"
                try:
                    async with httpx.AsyncClient(base_url=base, timeout=5) as probe:
                        started.add((await probe.get("/health")).json()["worker"])
                except httpx.TransportError:
                    await anyio.sleep(0.1)
            workers: set[int] = set()
            finished: list[str] = []

            async def one(number: int) -> None:
                # A connection per video, so that both workers get some.
                async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                    answer = await http.post("/videos", json={"prompt": f"fleet {number}"})
                    assert answer.status_code == 200, answer.text
                    workers.add(answer.json()["worker"])
                    status = await http.get(f"/videos/{answer.json()['task_id']}")
                    finished.append(status.json()["status"])

            async with anyio.create_task_group() as group:
                for number in range(12):
                    group.start_soon(one, number)
        finally:
            process.terminate()
            await process.wait()
    assert finished == ["succeed"] * 12
    assert workers <= started
    assert server.stats.codes[1303] == 0
    assert server.stats.routes["create"] == 12
