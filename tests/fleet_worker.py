"""One worker process of a fleet sharing one account: submits N tasks and watches them finish.

Run by tests/test_redis_fleet.py and benchmarks/bench_fleet.py as
``python -m tests.fleet_worker --api-url URL [--redis-url URL] ...``. It prints ``created ID``
per task as it is created, then one JSON line with its counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

import anyio

import kling_async as kling
from kling_async.limiter import RateLimit
from kling_async.redis_store import RedisStore
from kling_async.transport import AiohttpTransport, RawResponse

API_KEY = "sk-test-0123456789abcdef"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleet_worker")
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--redis-url", default=None, help="share limits through this Redis")
    parser.add_argument("--account", default="fleet")
    parser.add_argument("--name", required=True, help="this worker's name (in ids and leases)")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--burst", type=int, default=2)
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument(
        "--mode",
        choices=("tasks", "rate"),
        default="tasks",
        help="tasks: create and watch --tasks tasks; rate: check one task for --seconds",
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--start-at", type=float, default=0.0, help="wall time to begin at")
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--first-delay", type=float, default=0.02, help="first check of a task")
    return parser.parse_args(argv)


class _Recording:
    """A transport that notes the wall time of every request it sends (for the benchmark)."""

    def __init__(self) -> None:
        self._inner = AiohttpTransport()
        self.sent: list[float] = []

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
        self.sent.append(time.time())
        return await self._inner.request(
            method, url, headers=headers, json=json, params=params, timeout=timeout
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _run(options: argparse.Namespace) -> dict[str, object]:
    transport = _Recording()
    shared = (
        RedisStore(
            options.redis_url,
            account=options.account,
            name=options.name,
            lease_ttl=options.lease_ttl,
            poll_interval=0.02,
            recovery_seconds=2.0,
        )
        if options.redis_url
        else None
    )
    client = kling.KlingClient(
        api_key=API_KEY,
        provider=kling.local_emulator(options.api_url),
        retry=kling.RetryPolicy(base=0.02, cap=0.2, jitter=0.5),
        poll=kling.PollPolicy(
            first_delay=options.first_delay,
            min_interval=min(0.02, options.poll_interval),
            max_interval=options.poll_interval,
            # No jitter: the first check lands at --first-delay, when the task can have finished.
            jitter=0.0,
        ),
        rate=RateLimit(per_second=options.rate, burst=options.burst),
        max_active_tasks=options.slots,
        shared=shared,
        transport=transport,
    )
    if options.mode == "rate":
        return await _checks(client, options, transport)
    await _start_together(options)
    started = time.monotonic()
    created = 0
    errors: list[str] = []
    finished = 0
    async with client, client.watch() as results:
        gate = anyio.CapacityLimiter(options.concurrency)

        async def submit(number: int) -> None:
            nonlocal created
            async with gate:
                try:
                    task = await client.submit(
                        kling.TextToVideo(prompt=f"{options.name} #{number}"),
                        external_task_id=f"{options.name}-{number:04d}",
                    )
                except kling.KlingError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    return
            created += 1
            print(f"created {task.id}", flush=True)
            results.add(task)

        async with anyio.create_task_group() as group:
            for number in range(options.tasks):
                group.start_soon(submit, number)
        results.close()
        async for _task in results:
            finished += 1
        ended_at = time.time()
    return {
        "name": options.name,
        "created": created,
        "finished": finished,
        "errors": errors,
        "seconds": time.monotonic() - started,
        "ended_at": ended_at,
    }


async def _checks(
    client: kling.KlingClient, options: argparse.Namespace, transport: _Recording
) -> dict[str, object]:
    """Check one task as fast as the limiter allows, from 8 coroutines, for --seconds."""
    async with client:
        task = await client.text_to_video(f"{options.name} rate probe")
        await _start_together(options)
        transport.sent.clear()
        # One window for every worker: the rate is measured while all of them run.
        ends_at = (options.start_at or time.time()) + options.seconds
        with anyio.move_on_after(ends_at - time.time()):
            async with anyio.create_task_group() as group:
                for _ in range(8):
                    group.start_soon(_check_forever, client, task)
    return {"name": options.name, "sent": transport.sent}


async def _start_together(options: argparse.Namespace) -> None:
    """Wait for --start-at: every worker of a run starts together, whatever its start-up took."""
    if options.start_at:
        await anyio.sleep(max(0.0, options.start_at - time.time()))


async def _check_forever(client: kling.KlingClient, task: kling.Task) -> None:
    while True:
        with contextlib.suppress(kling.RateLimitError):
            await client.get_task(task)


def main(argv: list[str] | None = None) -> None:
    """Run one worker and print its summary as JSON."""
    options = _parse(sys.argv[1:] if argv is None else argv)
    summary = anyio.run(_run, options)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
