"""Request time limits kept by one timer (``_deadlines``), against a real slow HTTP server.

The transport no longer hands its timeout to aiohttp per request; these tests hold the
behaviour that aiohttp's ``ClientTimeout(total=...)`` gave: a late answer is an
``APITimeoutError`` at about the deadline (whatever the request was waiting for), other
cancellations pass through untouched, and nothing is left pending on the task afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import queue
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator

import aiohttp
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
    runner, url = await serving(app)
    try:
        yield url
    finally:
        await runner.cleanup()


async def serving(app: web.Application) -> tuple[web.AppRunner, str]:
    """*app* served on a free port of 127.0.0.1: its runner (to clean up) and its URL."""
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


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
        deadlines = transport._deadlines._last
        assert deadlines is not None
        assert deadlines.live == set()
        await asyncio.sleep(0.4)  # past every deadline: the timer fires and cancels nobody
        assert pending_cancellations() == 0
        assert deadlines._armed_at == math.inf
    finally:
        await transport.aclose()


async def _request_like(
    deadlines: Deadlines, seconds: float, *, swallow: bool = False, inner: float | None = None
) -> str:
    """What the transport does around a request, with a sleep standing in for the request
    (or, with *inner*, a request made inside it: aiohttp's hooks may send one)."""
    ticket = deadlines.start(seconds)
    assert ticket is not None
    try:
        try:
            if inner is not None:
                return await _request_like(deadlines, inner)
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if swallow:
                return "swallowed"
            raise
    except asyncio.CancelledError:
        if not Deadlines.expired(ticket):
            raise
        return "timeout"
    finally:
        Deadlines.end(ticket)
    return "answered"


def live(deadlines: Deadlines) -> set[object]:
    return set() if deadlines._last is None else set(deadlines._last.live)


async def test_a_cancellation_in_the_same_instant_wins_over_the_deadline() -> None:
    """The deadline and someone's ``task.cancel()`` land together: the cancellation goes on."""
    if sys.version_info < (3, 11):
        pytest.skip("Python 3.10 does not count cancellations (aiohttp's own timeouts neither)")
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(_request_like(deadlines, 0.05))
    await asyncio.sleep(0)
    assert deadlines._last is not None
    loop.call_at(deadlines._last._armed_at, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert live(deadlines) == set()


async def test_an_expired_request_alone_times_out() -> None:
    deadlines = Deadlines()
    assert await _request_like(deadlines, 0.05) == "timeout"
    assert pending_cancellations() == 0
    assert live(deadlines) == set()


async def test_a_swallowed_expiry_is_taken_back() -> None:
    """A request that ends normally after its deadline cancelled it leaves no count behind."""
    deadlines = Deadlines()

    async def run() -> tuple[str, int]:
        outcome = await _request_like(deadlines, 0.05, swallow=True)
        return outcome, pending_cancellations()

    assert await asyncio.create_task(run()) == ("swallowed", 0)
    assert live(deadlines) == set()


async def test_a_request_inside_a_request_keeps_both_limits() -> None:
    """Two requests of one task (one sent from the other's hooks): the inner one's end does
    not drop the outer one's limit, and each times out on its own deadline."""
    deadlines = Deadlines()
    started = time.monotonic()
    # The outer limit passes first: the inner request sees a cancellation that is not its own.
    assert await _request_like(deadlines, 0.1, inner=5) == "timeout"
    assert 0.099 <= time.monotonic() - started < 1
    # The inner limit passes first: the inner request times out, the outer one goes on.
    assert await _request_like(deadlines, 5, inner=0.1) == "timeout"
    assert pending_cancellations() == 0
    assert live(deadlines) == set()


def test_each_event_loop_keeps_its_own_deadlines() -> None:
    """One transport used from two event loops at once (two threads): each request still
    times out on its own deadline, and neither loop's requests unsettle the other's."""
    deadlines = Deadlines()
    results: dict[str, object] = {}

    def in_thread(name: str, seconds: float) -> None:
        async def main() -> tuple[str, float]:
            started = time.monotonic()
            outcome = await _request_like(deadlines, seconds)
            return outcome, time.monotonic() - started

        results[name] = asyncio.run(main())

    threads = [
        threading.Thread(target=in_thread, args=("slow", 0.5)),
        threading.Thread(target=in_thread, args=("quick", 0.1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    slow, quick = results["slow"], results["quick"]
    assert isinstance(slow, tuple)
    assert isinstance(quick, tuple)
    assert slow[0] == quick[0] == "timeout"
    assert 0.499 <= slow[1] < 2
    assert 0.099 <= quick[1] < 1


def test_no_event_loop_is_kept_alive() -> None:
    """One transport's deadlines outlive many ``asyncio.run`` calls, some of whose loops close
    with a request still waiting: none of those loops (nor their tasks) stays in memory."""
    deadlines = Deadlines()
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def one_request() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        assert await _request_like(deadlines, 0.01) == "timeout"

    for _ in range(5):
        asyncio.run(one_request())
    for _ in range(3):
        # A loop closed under a request that never ended (no asyncio.run to cancel it).
        loop = asyncio.new_event_loop()
        loops.append(weakref.ref(loop))
        waiting = loop.create_task(_request_like(deadlines, 60))
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
        del loop, waiting
    gc.collect()
    assert [ref() for ref in loops] == [None] * 8


async def test_outside_a_task_no_deadline_is_kept() -> None:
    """In a plain loop callback there is no task to cancel: ``start`` says so (``None``) and
    the transport leaves the whole limit to aiohttp."""
    deadlines = Deadlines()
    results: list[object] = []
    asyncio.get_running_loop().call_soon(lambda: results.append(deadlines.start(1.0)))
    await asyncio.sleep(0.01)
    assert results == [None]
    assert live(deadlines) == set()


async def test_closing_the_transport_keeps_the_limits_of_requests_on_a_shared_session(
    server: str,
) -> None:
    """A session passed in outlives the transport: its requests still time out."""
    async with aiohttp.ClientSession() as session:
        transport = AiohttpTransport(session)

        async def late() -> None:
            with pytest.raises(kling.APITimeoutError):
                await transport.request("GET", f"{server}/slow", headers=HEADERS, timeout=0.3)

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(late)
            await asyncio.sleep(0.05)
            await transport.aclose()
        assert time.monotonic() - started < 2


async def test_a_bad_url_leaves_no_deadline_behind(server: str) -> None:
    transport = AiohttpTransport()
    try:
        with pytest.raises(TypeError):
            await transport.request("GET", ["not", "a", "url"], headers=HEADERS, timeout=0.1)  # type: ignore[arg-type]
        assert live(transport._deadlines) == set()
        await asyncio.sleep(0.2)  # no stray cancellation lands here
    finally:
        await transport.aclose()


async def test_no_limit_at_zero_as_with_aiohttp(server: str) -> None:
    transport = AiohttpTransport()
    try:
        answer = await transport.request("GET", f"{server}/fast", headers=HEADERS, timeout=0)
        assert answer.status == 200
    finally:
        await transport.aclose()


@contextlib.contextmanager
def server_in_a_thread() -> Iterator[str]:
    """``/late-body`` (headers at once, the body 0.2 s later) served from its own thread and
    event loop, so that it keeps going while the test blocks its own loop."""
    ready: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        async def late_body(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = 11
            await response.prepare(request)
            await asyncio.sleep(0.2)
            await response.write(b'{"code": 0}')
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_get("/late-body", late_body)
        runner, url = await serving(app)
        ready.put(url)
        await asyncio.to_thread(stop.wait)
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        yield ready.get(timeout=10)
    finally:
        stop.set()
        thread.join(10)


async def test_an_answer_complete_as_the_deadline_passes_is_kept() -> None:
    """The body arrives while the client's loop is busy, and the loop sees it in the same
    iteration as it finds the deadline passed: aiohttp's own timer, cancelled as the answer
    completes, kept the answer, and so does the shared timer."""
    transport = AiohttpTransport()
    loop = asyncio.get_running_loop()
    with server_in_a_thread() as url:
        try:
            # The loop is blocked from 0.1 s to 0.5 s: the body (at 0.2 s) and the 0.3 s
            # deadline are both there when it runs again.
            loop.call_later(0.1, time.sleep, 0.4)
            answer = await transport.request(
                "GET", f"{url}/late-body", headers=HEADERS, timeout=0.3
            )
            assert answer.status == 200
            assert answer.body == b'{"code": 0}'
            assert pending_cancellations() == 0
        finally:
            await transport.aclose()
