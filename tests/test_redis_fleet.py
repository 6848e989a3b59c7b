"""Real processes sharing one account through Redis: 4 workers x 100 tasks, and a SIGKILL.

The emulator (in this process) enforces 10 task slots across all keys and a request rate; each
worker (tests/fleet_worker.py) alone is allowed both in full, so only sharing keeps them under.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from kling_async.testing import FakeKlingServer, Timeline

from .fleet_worker import API_KEY
from .redis_support import RedisServer, fresh_account, requires_redis, shared_url

pytestmark = [pytest.mark.timeout(180), requires_redis]

ROOT = Path(__file__).resolve().parent.parent
SLOTS = 10
SERVER_RATE = 200.0
CLIENT_RATE = 150.0  # per account: each worker alone would send this much


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """``$REDIS_URL`` or a redis-server of this module."""
    server = RedisServer().start()
    try:
        yield shared_url(server)
    finally:
        server.stop()


def _emulator() -> FakeKlingServer:
    return FakeKlingServer(
        api_key=API_KEY,
        timeline=Timeline(queue_seconds=0.02, processing_seconds=0.1),
        max_active_tasks=SLOTS,
        rate_limit=SERVER_RATE,
        rate_burst=10,
    )


async def _start(
    api_url: str, redis_url: str, account: str, name: str, *extra: str
) -> anyio.abc.Process:
    return await anyio.open_process(
        [
            sys.executable,
            "-m",
            "tests.fleet_worker",
            "--api-url",
            api_url,
            "--redis-url",
            redis_url,
            "--account",
            account,
            "--name",
            name,
            "--slots",
            str(SLOTS),
            "--rate",
            str(CLIENT_RATE),
            *extra,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def _finish(process: anyio.abc.Process) -> tuple[dict[str, Any], list[str]]:
    """Read a worker's output to its end; return its summary and its ``created`` lines."""
    assert process.stdout is not None
    chunks = [chunk async for chunk in process.stdout]
    await process.wait()
    lines = b"".join(chunks).decode().splitlines()
    assert process.returncode == 0, lines[-5:]
    return json.loads(lines[-1]), [line for line in lines if line.startswith("created ")]


def _external_ids(server: FakeKlingServer) -> Counter[str]:
    return Counter(task.external_task_id or "" for task in server.tasks.values())


async def test_four_workers_share_slots_and_rate_without_1303_or_1302(redis_url: str) -> None:
    """4 processes x 100 tasks on one account: every task done, zero 1303 and zero 1302."""
    account = fresh_account()
    async with _emulator() as server:
        processes = [
            await _start(server.url, redis_url, account, f"w{number}") for number in range(4)
        ]
        summaries: list[dict[str, Any]] = []

        async def collect(process: anyio.abc.Process) -> None:
            summary, _created = await _finish(process)
            summaries.append(summary)

        async with anyio.create_task_group() as group:
            for process in processes:
                group.start_soon(collect, process)
        assert sorted(summary["finished"] for summary in summaries) == [100] * 4
        assert all(summary["errors"] == [] for summary in summaries)
        assert server.stats.codes[1303] == 0
        assert server.stats.codes[1302] == 0
        assert server.stats.routes["create"] == 400
        ids = _external_ids(server)
        assert len(ids) == 400
        assert max(ids.values()) == 1


async def test_a_killed_worker_gives_its_slots_back_within_the_ttl(redis_url: str) -> None:
    """SIGKILL one of 4 workers mid-run: its leases lapse within the TTL, the others finish, and
    no task is created twice."""
    account = fresh_account()
    ttl = 1.0
    async with _emulator() as server:
        victim = await _start(server.url, redis_url, account, "victim", "--lease-ttl", str(ttl))
        others = [
            await _start(server.url, redis_url, account, f"w{number}", "--lease-ttl", str(ttl))
            for number in range(3)
        ]
        summaries: list[dict[str, Any]] = []

        async def collect(process: anyio.abc.Process) -> None:
            summary, _created = await _finish(process)
            summaries.append(summary)

        async with anyio.create_task_group() as group:
            for process in others:
                group.start_soon(collect, process)
            assert victim.stdout is not None
            seen = b""
            async for chunk in victim.stdout:
                seen += chunk
                if seen.count(b"created ") >= 20:
                    break
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            killed_at = time.monotonic()
            leases_key = f"kling-async:{{{account}}}:slots:leases"
            import redis.asyncio as aioredis

            async with aioredis.Redis.from_url(redis_url) as look:
                while True:
                    members = await look.zrange(leases_key, 0, -1)
                    if not any(member.startswith(b"victim:") for member in members):
                        break
                    assert time.monotonic() - killed_at < ttl + 0.5, "the victim's leases stayed"
                    await anyio.sleep(0.05)
        assert sorted(summary["finished"] for summary in summaries) == [100] * 3
        assert all(summary["errors"] == [] for summary in summaries)
        assert server.stats.codes[1303] == 0
        ids = _external_ids(server)
        assert max(ids.values()) == 1  # no task created twice
        assert sum(1 for key in ids if key.startswith("w")) == 300
        assert victim.returncode == -signal.SIGKILL
