"""Request time limits kept by one timer (``_deadlines``), against a real slow HTTP server.

The transport no longer hands its timeout to aiohttp per request; these tests hold the
behaviour that aiohttp's ``ClientTimeout(total=...)`` gave: a late answer is an
``APITimeoutError`` at about the deadline (whatever the request was waiting for), other
cancellations pass through untouched, and nothing is left pending on the task afterwards.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator

import anyio
import pytest
from aiohttp import web

import kling_async as kling
from kling_async._deadlines import Deadlines
from kling_async.transport import AiohttpTransport

HEADERS = {"Accept": "application/json"}


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """``/slow`` answers after 5 s, ``/fast`` at once."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"code": 0})

    async def fast(request: web.Request) -> web.Response:
        return web.json_response({"code": 0, "data": {}})

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/fast", fast)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def pending_cancellations() -> int:
    task = asyncio.current_task()
    assert task is not None
    return task.cancelling() if sys.version_info >= (3, 11) else 0


async def test_a_late_answer_times_out_at_its_deadline(server: str) -> None:
    transport = AiohttpTransport()
    try:
        started = time.monotonic()
        with pytest.raises(kling.APITimeoutError) as info:
            await transport.request("GET", f"{server}/slow", headers=HEADERS, timeout=0.2)
        elapsed = time.monotonic() - started
        assert 0.19 <= elapsed < 2.0
        assert info.value.maybe_sent
        assert "timed out" in str(info.value)
        # Nothing chained, and the cancellation that ended it is not left pending.
        assert info.value.__context__ is None
        assert info.value.__cause__ is None
        assert pending_cancellations() == 0
        await asyncio.sleep(0)  # would raise CancelledError if a cancellation were left over
        answer = await transport.request("GET", f"{server}/fast", headers=HEADERS, timeout=5)
        assert answer.status == 200
    finally:
        await transport.aclose()


async def test_each_request_keeps_its_own_deadline(server: str) -> None:
    """A shorter limit started after a longer one still ends first (the timer is re-armed)."""
    transport = AiohttpTransport()
    ended: dict[float, float] = {}

    async def timed(limit: float) -> None:
        started = time.monotonic()
        with pytest.raises(kling.APITimeoutError):
            await transport.request("GET", f"{server}/slow", headers=HEADERS, timeout=limit)
        ended[limit] = time.monotonic() - started

    try:
        async with anyio.create_task_group() as group:
            for limit in (1.2, 0.15, 0.5):
                group.start_soon(timed, limit)
                await asyncio.sleep(0.01)
    finally:
        await transport.aclose()
    assert 0.149 <= ended[0.15] < 0.45
    assert 0.499 <= ended[0.5] < 0.9
    assert 1.199 <= ended[1.2] < 2.5


async def test_the_limit_covers_waiting_for_a_pooled_connection(server: str) -> None:
    """With one connection held by a hung request, the next one times out waiting for it."""
    transport = AiohttpTransport(connection_limit=1)
    try:
        async with anyio.create_task_group() as group:

            async def hold() -> None:
                with pytest.raises(kling.APITimeoutError):
                    await transport.request("GET", f"{server}/slow", headers=HEADERS, timeout=1.5)

            group.start_soon(hold)
            await asyncio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(kling.APITimeoutError):
                await transport.request("GET", f"{server}/fast", headers=HEADERS, timeout=0.3)
            assert time.monotonic() - started < 1.2
    finally:
        await transport.aclose()


async def test_a_cancel_scope_is_not_turned_into_a_timeout(server: str) -> None:
    transport = AiohttpTransport()
    try:
        with anyio.move_on_after(0.15) as scope:
            await transport.request("GET", f"{server}/slow", headers=HEADERS, timeout=5)
        assert scope.cancelled_caught
        assert pending_cancellations() == 0
        with anyio.move_on_after(0.15) as scope:
            await asyncio.sleep(0)  # the request's deadline fires no stray cancellation
        assert not scope.cancelled_caught
    finally:
        await transport.aclose()


async def test_fast_requests_leave_no_deadline_behind(server: str) -> None:
    transport = AiohttpTransport()
    try:
        async with anyio.create_task_group() as group:
            for _ in range(20):

                async def some() -> None:
                    for _ in range(10):
                        answer = await transport.request(
                            "GET", f"{server}/fast", headers=HEADERS, timeout=0.3
                        )
                        assert answer.status == 200

                group.start_soon(some)
        deadlines = transport._deadlines
        assert deadlines._live == {}
        assert deadlines._expired == {}
        await asyncio.sleep(0.4)  # past every deadline: the timer fires and cancels nobody
        assert pending_cancellations() == 0
        assert deadlines._timer is None
    finally:
        await transport.aclose()


async def _request_like(deadlines: Deadlines, seconds: float, *, swallow: bool = False) -> str:
    """What the transport does around a request, with a sleep standing in for the request."""
    task = deadlines.start(seconds)
    assert task is not None
    try:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if swallow:
                return "swallowed"
            raise
    except asyncio.CancelledError:
        if not deadlines.expired(task):
            raise
        return "timeout"
    finally:
        deadlines.end(task)
    return "answered"


async def test_a_cancellation_in_the_same_instant_wins_over_the_deadline() -> None:
    """The deadline and someone's ``task.cancel()`` land together: the cancellation goes on."""
    if sys.version_info < (3, 11):
        pytest.skip("Python 3.10 does not count cancellations (aiohttp's own timeouts neither)")
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(_request_like(deadlines, 0.05))
    await asyncio.sleep(0)
    loop.call_at(deadlines._armed_at, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadlines._live == {}
    assert deadlines._expired == {}


async def test_an_expired_request_alone_times_out() -> None:
    deadlines = Deadlines()
    assert await _request_like(deadlines, 0.05) == "timeout"
    assert pending_cancellations() == 0
    assert deadlines._live == {}


async def test_a_swallowed_expiry_is_taken_back() -> None:
    """A request that ends normally after its deadline cancelled it leaves no count behind."""
    deadlines = Deadlines()

    async def run() -> tuple[str, int]:
        outcome = await _request_like(deadlines, 0.05, swallow=True)
        return outcome, pending_cancellations()

    assert await asyncio.create_task(run()) == ("swallowed", 0)
    assert deadlines._expired == {}


async def test_outside_a_task_no_deadline_is_kept() -> None:
    """In a plain loop callback there is no task to cancel: ``start`` says so (``None``) and
    the transport leaves the whole limit to aiohttp."""
    deadlines = Deadlines()
    results: list[object] = []
    asyncio.get_running_loop().call_soon(lambda: results.append(deadlines.start(1.0)))
    await asyncio.sleep(0.01)
    assert results == [None]
    assert deadlines._live == {}
