"""The callback receiver against the emulator, which posts real callbacks to a real server."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import anyio
import httpx
import pytest
from aiohttp import web
from starlette.applications import Starlette

import kling_async as kling
from kling_async.events import TaskFinished
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.webhooks import (
    TOKEN_PARAM,
    WebhookReceiver,
    WebhookVerificationError,
    aiohttp_handler,
    sign_payload,
    verify_signature,
)
from kling_async.webhooks_asgi import WebhookApp, asgi_app, starlette_route

from .conftest import API_KEY, FAST_RETRY

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "tok-0123456789abcdef-secret"
SLOW_POLL = kling.PollPolicy(
    first_delay=30, min_interval=30, max_interval=60, callback_interval=30, jitter=0
)
"""Polling so slow that only a callback can explain a task finishing within a test."""


class TimedReceiver(WebhookReceiver):
    """Records when each callback arrived and which status it claimed."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.arrivals: list[tuple[float, str]] = []

    async def handle(
        self,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        body: bytes,
        *,
        peer: str | None = None,
    ) -> tuple[int, str]:
        """Note the arrival time before the real handling."""
        arrived = time.monotonic()
        try:
            data = json.loads(body)
            status = str(data.get("task_status") or data.get("status"))
        except (ValueError, AttributeError):
            status = "?"
        self.arrivals.append((arrived, status))
        return await super().handle(headers, query, body, peer=peer)


@contextlib.asynccontextmanager
async def listening(receiver: WebhookReceiver) -> AsyncIterator[str]:
    """Serve *receiver* with aiohttp.web on 127.0.0.1; yield the callback route's URL."""
    app = web.Application()
    app.router.add_post("/kling/callback", aiohttp_handler(receiver))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/kling/callback"
    finally:
        await runner.cleanup()


def make_client(server: FakeKlingServer, poll: kling.PollPolicy = SLOW_POLL) -> kling.KlingClient:
    """A client for *server* with the given polling policy."""
    return kling.KlingClient(
        api_key=API_KEY,
        provider=kling.local_emulator(server.url),
        retry=FAST_RETRY,
        poll=poll,
        timeout=5.0,
    )


def polls(server: FakeKlingServer) -> int:
    """Status checks the server answered (single queries plus list requests)."""
    return server.stats.routes["query"] + server.stats.routes["list"]


async def post(url: str, body: bytes, headers: Mapping[str, str] | None = None) -> int:
    """POST *body* to *url*; return the HTTP status."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=dict(headers or {})) as response,
    ):
        await response.read()
        return response.status


async def wait_until(condition: Any, limit: float = 5.0) -> None:
    """Wait (at most *limit* seconds) until *condition()* is true."""
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 - counters in other objects; no event to await
            await anyio.sleep(0.005)


@contextlib.asynccontextmanager
async def hooked_client(
    timeline: Timeline,
) -> AsyncIterator[tuple[FakeKlingServer, WebhookReceiver, kling.KlingClient]]:
    """An emulator, a receiver listening on 127.0.0.1, and a ``KlingClient(webhook=receiver)``
    that polls so slowly (``SLOW_POLL``) that only callbacks can finish tasks within a test."""
    receiver = WebhookReceiver(token=TOKEN)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as server,
        listening(receiver) as url,
    ):
        receiver.public_url = url
        async with make_client_with(server, receiver, poll=SLOW_POLL) as client:
            yield server, receiver, client


async def track_one(
    client: kling.KlingClient,
    receiver: WebhookReceiver,
    url: str,
    results: kling.Watcher,
    prompt: str,
) -> tuple[kling.Task, list[kling.Task]]:
    """Submit one task with the receiver's callback URL, track it, and collect what is yielded."""
    task = await client.text_to_video(prompt, callback_url=receiver.callback_url(url))
    receiver.track(results, task)
    results.close()
    return task, [done async for done in results]


def final_callback_delivered(server: FakeKlingServer) -> bool:
    """Whether the emulator has delivered a "succeed" callback (and the receiver said 200)."""
    return any(
        record.status == 200 and record.payload.get("task_status") == "succeed"
        for record in server.callbacks
    )


async def next_or_none(results: kling.Watcher, seconds: float) -> kling.Task | None:
    """The next finished task, or ``None`` if none comes within *seconds*."""
    with anyio.move_on_after(seconds):
        return await results.__anext__()
    return None


# -- end to end: the emulator posts callbacks -------------------------------------------------


async def test_callback_yields_within_100ms_of_arrival() -> None:
    """A finished task is yielded within 100 ms of its callback's arrival, after one GET."""
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.2)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as server,
        make_client(server) as client,
    ):
        receiver = TimedReceiver(confirm=client.get_task)
        async with listening(receiver) as url, receiver, client.watch(timeout=20) as results:
            task, finished = await track_one(client, receiver, url, results, "A beach")
            yielded_at = time.monotonic()
        assert [done.id for done in finished] == [task.id]
        assert finished[0].succeeded
        assert finished[0].videos
        terminal = [at for at, status in receiver.arrivals if status == "succeed"]
        assert len(terminal) == 1
        assert yielded_at - terminal[0] < 0.1
        assert receiver.stats.confirmations == 1
        assert polls(server) == 1  # the confirming GET, nothing else
        assert receiver.tracking == 0


async def test_client_with_webhook_fills_in_callbacks_and_tracks_by_them() -> None:
    """``KlingClient(webhook=receiver)``: callback_url filled in, tasks tracked by callback.

    Polling is slow enough (first check after 30 s) that only callbacks can finish the tasks
    within the test; the only status requests are the one confirming GET per task.
    """
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.15)
    receiver = TimedReceiver(token=TOKEN)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as server,
        listening(receiver) as url,
    ):
        receiver.public_url = url
        client = kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=FAST_RETRY,
            poll=SLOW_POLL,
            webhook=receiver,
        )
        async with client:
            tasks = await client.submit_many(
                [kling.TextToVideo(prompt=f"Shot {n}") for n in range(3)]
            )
            own = await client.text_to_video("Elsewhere", callback_url=f"{server.url}/elsewhere")
            for task in tasks:
                assert server.tasks[task.id].callback_url == f"{url}?token={TOKEN}"
                assert client.expects_callback(task)
            assert not client.expects_callback(own)
            async with client.watch(tasks, timeout=20) as results:
                finished = [done async for done in results]
            assert sorted(done.id for done in finished) == sorted(task.id for task in tasks)
            assert all(done.succeeded for done in finished)
            # Each unsigned "succeed" made the watcher check its task at once: a request each
            # at most (one list request can answer for several), and no polling otherwise.
            assert receiver.stats.confirmations == 0
            assert 1 <= polls(server) <= 3
            before = polls(server)
            assert receiver.tracking == 0
            assert not any(client.expects_callback(task) for task in tasks)

            single = await client.text_to_video("One more")
            done = await client.wait(single, timeout=20)
            assert done.succeeded
            assert polls(server) - before == 1
        assert receiver.tracking == 0


async def test_two_watchers_of_one_task_both_hear_its_callback() -> None:
    """A stream and a second watcher (say, client.wait) of the same task both get the result."""
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.15)
    async with hooked_client(timeline) as (_, _, client):
        task = await client.text_to_video("Watched twice")
        async with client.watch(timeout=10) as first, client.watch(timeout=10) as second:
            first.add(task)
            second.add(task)
            with anyio.fail_after(5):  # polling alone would take 30 s
                assert (await first.__anext__()).succeeded
                assert (await second.__anext__()).succeeded


async def test_a_watcher_left_early_does_not_hold_its_task_slot() -> None:
    """Leaving a watcher before its task finished (callback lost) must not block submit().

    Submitters waiting for a slot refresh the tasks no running watcher checks; a watcher that
    was left must not count as checking them.
    """
    timeline = Timeline(queue_seconds=0.02, processing_seconds=0.2)
    receiver = WebhookReceiver(token=TOKEN, public_url="http://127.0.0.1:9/kling/callback")
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline, callback_drop_rate=1.0) as server,
        kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=FAST_RETRY,
            poll=kling.PollPolicy(
                first_delay=0.02, min_interval=0.02, max_interval=0.1, callback_interval=60
            ),
            max_active_tasks=1,
            webhook=receiver,
        ) as client,
    ):
        first = await client.text_to_video("one")
        with anyio.move_on_after(0.05):
            async with client.watch() as results:
                results.add(first)
                async for _ in results:
                    pass
        assert receiver.tracking == 0  # the left watcher's routes are gone
        with anyio.fail_after(5):
            second = await client.text_to_video("two")
        assert second.id != first.id


async def test_one_receiver_serves_successive_clients() -> None:
    """An app restarted in one process (tests, reloads) reuses its receiver with a new client."""
    receiver = WebhookReceiver(token=TOKEN, public_url="http://127.0.0.1:9/kling/callback")
    async with FakeKlingServer(api_key=API_KEY) as server:
        for _ in range(2):
            async with make_client_with(server, receiver) as client:
                task = await client.text_to_video("again")
                assert client.expects_callback(task)
    async with receiver:
        with pytest.raises(RuntimeError, match="already running"):
            await receiver.__aenter__()


async def test_a_final_callback_before_watch_is_not_lost() -> None:
    """A task that finished (and called back) between submit() and wait() is checked at once."""
    timeline = Timeline(queue_seconds=0.02, processing_seconds=0.05)
    async with hooked_client(timeline) as (server, _, client):
        task = await client.text_to_video("quick")
        await wait_until(lambda: final_callback_delivered(server))  # before any watch
        with anyio.fail_after(5):  # the safety net alone would take 30 s
            done = await client.wait(task, timeout=60)
        assert done.succeeded


async def test_track_after_an_early_final_callback_checks_at_once() -> None:
    """The hand-wired path: ``receiver.track()`` of a task whose final callback already came."""
    timeline = Timeline(queue_seconds=0.02, processing_seconds=0.05)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as server,
        make_client(server) as client,
    ):
        receiver = WebhookReceiver.for_client(client)
        async with listening(receiver) as url, receiver:
            task = await client.text_to_video("quick", callback_url=receiver.callback_url(url))
            await wait_until(lambda: final_callback_delivered(server))
            async with client.watch(timeout=20) as results:
                receiver.track(results, task)
                results.close()
                with anyio.fail_after(5):  # the safety net alone would take 30 s
                    assert [done.id async for done in results] == [task.id]


@pytest.mark.parametrize("first_ends_by", ["expiring", "finishing"])
async def test_another_watcher_still_gets_the_task(first_ends_by: str) -> None:
    """One watcher of a task giving up on it, or seeing it finish, leaves the others served."""
    receiver = WebhookReceiver(token=TOKEN, public_url="http://127.0.0.1:9/kling/callback")
    timeline = Timeline(queue_seconds=100, processing_seconds=100)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline, callback_drop_rate=1.0) as server,
        make_client_with(server, receiver, poll=SLOW_POLL) as client,
    ):
        task = await client.text_to_video("shared")
        async with client.watch(timeout=30) as stream:
            stream.add(task)
            if first_ends_by == "expiring":
                with pytest.raises(kling.WaitTimeoutError):
                    await client.wait(task, timeout=0.2)
                server.set_status(task.id, "succeed")
                body = json.dumps({"task_id": task.id, "task_status": "succeed"}).encode()
                assert await receiver.handle({}, {TOKEN_PARAM: TOKEN}, body) == (200, "ok")
            else:
                server.set_status(task.id, "succeed")
                async with client.watch(timeout=5) as other:
                    other.add(task)
                    other.poll_soon(task.id)
                    assert (await other.__anext__()).succeeded
            with anyio.fail_after(5):  # the stream's safety net is 30 s away
                assert (await stream.__anext__()).succeeded


def make_client_with(
    server: FakeKlingServer, receiver: WebhookReceiver, *, poll: kling.PollPolicy | None = None
) -> kling.KlingClient:
    """A client for *server* that fills in *receiver*'s callback URL."""
    return kling.KlingClient(
        api_key=API_KEY,
        provider=kling.local_emulator(server.url),
        retry=FAST_RETRY,
        poll=poll,
        webhook=receiver,
    )


def test_client_webhook_needs_a_public_url() -> None:
    """Without public_url the client could not fill in callback_url: a clear error at once."""
    with pytest.raises(kling.ConfigurationError, match="public_url"):
        kling.KlingClient(api_key=API_KEY, webhook=WebhookReceiver())
    with pytest.raises(kling.ConfigurationError, match="http"):
        kling.KlingClient(api_key=API_KEY, webhook=WebhookReceiver(public_url="example.com/cb"))


async def test_dropped_callback_is_caught_by_the_safety_net() -> None:
    """With every callback lost, the callback_interval poll still finds the task."""
    poll = kling.PollPolicy(
        first_delay=30, min_interval=30, max_interval=60, callback_interval=0.3, jitter=0
    )
    timeline = Timeline(queue_seconds=0.02, processing_seconds=0.05)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline, callback_drop_rate=1.0) as server,
        make_client(server, poll) as client,
    ):
        receiver = WebhookReceiver.for_client(client)
        async with listening(receiver) as url, receiver, client.watch(timeout=10) as results:
            task, finished = await track_one(client, receiver, url, results, "A beach")
        assert [done.id for done in finished] == [task.id]
        assert receiver.stats.received == 0
        assert server.callbacks
        assert all(record.dropped for record in server.callbacks)
        assert receiver.tracking == 0  # forgotten through the client's TaskFinished event


def _statuses(server: FakeKlingServer) -> list[str]:
    return [str(record.payload.get("task_status")) for record in server.callbacks]


async def test_duplicate_deliveries_yield_once() -> None:
    """Each callback sent twice: one confirming GET, one yield."""
    timeline = Timeline(queue_seconds=0.02, processing_seconds=0.05)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline, callback_duplicate_rate=1.0) as server,
        make_client(server) as client,
    ):
        receiver = WebhookReceiver.for_client(client)
        async with listening(receiver) as url, receiver, client.watch(timeout=10) as results:
            task, finished = await track_one(client, receiver, url, results, "A beach")
            # Both copies of the final callback. The emulator notifies the status it sees at
            # each tick, so on a loaded machine "processing" may pass unseen: 4 callbacks, not 6.
            await wait_until(lambda: _statuses(server).count("succeed") >= 2)
        delivered = set(_statuses(server))
        assert len(server.callbacks) == 2 * len(delivered)
        assert [done.id for done in finished] == [task.id]
        assert receiver.stats.confirmations == 1
        assert receiver.stats.duplicates + receiver.stats.ignored >= len(delivered)
        assert polls(server) == 1


async def test_new_style_payload_is_accepted() -> None:
    """The new-standard body (id/status/outputs) is understood like the legacy one."""
    timeline = Timeline(queue_seconds=0.02, processing_seconds=0.05)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline, callback_style="new") as server,
        make_client(server) as client,
    ):
        receiver = TimedReceiver(confirm=client.get_task)
        async with listening(receiver) as url, receiver, client.watch(timeout=10) as results:
            task, finished = await track_one(client, receiver, url, results, "A beach")
        assert [done.id for done in finished] == [task.id]
        assert "succeeded" in [status for _, status in receiver.arrivals]
        assert receiver.stats.confirmations == 1
        assert not receiver.stats.rejected


async def test_failed_task_arrives_by_callback() -> None:
    """A ``failed`` callback is confirmed and the failed task is yielded."""
    timeline = Timeline(queue_seconds=0.02, processing_seconds=0.05)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as server,
        make_client(server) as client,
    ):
        receiver = WebhookReceiver.for_client(client)
        async with listening(receiver) as url, receiver, client.watch(timeout=10) as results:
            _, finished = await track_one(client, receiver, url, results, "FAIL please")
        assert len(finished) == 1
        assert finished[0].failed
        assert finished[0].status_msg == "content risk control"


# -- forged and broken callbacks ---------------------------------------------------------------


async def test_forged_callbacks_change_nothing() -> None:
    """Wrong token → 4xx; right token claiming ``succeed`` → the GET says otherwise → not yielded.

    The genuine callback that comes later is still honoured.
    """
    timeline = Timeline(queue_seconds=0.05, processing_seconds=1.0)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as server,
        make_client(server) as client,
    ):
        receiver = WebhookReceiver.for_client(client)
        async with listening(receiver) as url, receiver, client.watch(timeout=10) as results:
            real_url = receiver.callback_url(url)
            task = await client.text_to_video("A beach", callback_url=real_url)
            receiver.track(results, task)
            results.close()
            forged = json.dumps(
                {"task_id": task.id, "task_status": "succeed", "task_result": {"videos": []}}
            ).encode()
            assert await post(url, forged) == 401
            assert await post(f"{url}?{TOKEN_PARAM}=not-the-token", forged) == 403
            assert await post(real_url, forged) == 200
            await wait_until(lambda: receiver.stats.disagreements == 1)
            assert await next_or_none(results, 0.2) is None
            assert [pending.id for pending in results.pending] == [task.id]
            # The same forged claim again costs one more GET, never a yield.
            assert await post(real_url, forged) == 200
            await wait_until(lambda: receiver.stats.disagreements == 2)
            finished = [done async for done in results]
        assert [done.id for done in finished] == [task.id]
        assert finished[0].succeeded
        assert receiver.stats.rejected == {401: 1, 403: 1}
        assert receiver.stats.confirmations == 3


async def test_malformed_and_oversized_bodies_are_rejected(server: FakeKlingServer) -> None:
    """Not JSON or not a task → 400; over max_body (declared or streamed) → 413."""
    receiver = WebhookReceiver(token=TOKEN, max_body=1024)
    async with listening(receiver) as url, receiver:
        target = receiver.callback_url(url)
        assert await post(target, b"{not json") == 400
        assert await post(target, b"\xff\xfe") == 400
        assert await post(target, b"[1, 2]") == 400
        assert await post(target, b'{"task_status": "succeed"}') == 400
        assert await post(target, b"x" * 2048) == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b" " * 512

        async with (
            aiohttp.ClientSession() as session,
            session.post(target, data=chunks()) as response,
        ):
            assert response.status == 413
        assert await post(target, b'{"task_id": "1", "task_status": "succeed"}') == 200
    assert receiver.stats.rejected == {400: 4, 413: 2}
    assert receiver.stats.ignored == 1


async def test_unknown_task_is_accepted_and_ignored() -> None:
    """A well-formed callback about a task nobody tracks answers 200 and touches nothing."""
    receiver = WebhookReceiver(token=TOKEN)
    status = await receiver.handle(
        {}, {TOKEN_PARAM: TOKEN}, b'{"task_id": "42", "task_status": "succeed"}'
    )
    assert status == (200, "ok")
    assert receiver.stats.ignored == 1


async def test_external_id_fallback_routes_remapped_ids(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """A gateway-remapped task id still reaches the task through its external_task_id."""
    receiver = WebhookReceiver(token=TOKEN, confirm=client.get_task)
    async with receiver, client.watch(timeout=10) as results:
        task = await client.text_to_video("A beach", external_task_id="ext-remap-1")
        receiver.track(results, task)
        results.close()
        server.set_status(task.id, "succeed")
        body = json.dumps(
            {
                "task_id": "gateway-7",
                "task_status": "succeed",
                "task_info": {"external_task_id": "ext-remap-1"},
            }
        ).encode()
        assert await receiver.handle({}, {TOKEN_PARAM: TOKEN}, body) == (200, "ok")
        done = await next_or_none(results, 5)
    assert done is not None
    assert done.id == task.id
    assert receiver.stats.confirmations == 1


async def test_confirm_failure_falls_back_to_polling(server: FakeKlingServer) -> None:
    """When the confirming GET fails, the watcher is asked to poll the task soon instead."""
    async with make_client(server) as client:

        async def broken(task: kling.Task) -> kling.Task:
            raise kling.APIConnectionError("down")

        receiver = WebhookReceiver(token=TOKEN, confirm=broken)
        async with receiver, client.watch(timeout=10) as results:
            task = await client.text_to_video("A beach")
            receiver.track(results, task)
            server.set_status(task.id, "succeed")
            body = json.dumps({"task_id": task.id, "task_status": "succeed"}).encode()
            assert await receiver.handle({}, {TOKEN_PARAM: TOKEN}, body) == (200, "ok")
            done = await next_or_none(results, 5)
    assert done is not None
    assert done.succeeded
    assert receiver.stats.confirm_failures == 1


async def test_without_a_running_receiver_a_hint_polls_soon(server: FakeKlingServer) -> None:
    """Outside ``async with receiver`` an unsigned terminal callback makes the watcher poll."""
    async with make_client(server) as client:
        receiver = WebhookReceiver(token=TOKEN, confirm=client.get_task)
        async with client.watch(timeout=10) as results:
            task = await client.text_to_video("A beach")
            receiver.track(results, task)
            body = json.dumps({"task_id": task.id, "task_status": "succeed"}).encode()
            await receiver.handle({}, {TOKEN_PARAM: TOKEN}, b'{"task_id": "x", "task_status": 1}')
            server.set_status(task.id, "succeed")
            assert await receiver.handle({}, {TOKEN_PARAM: TOKEN}, body) == (200, "ok")
            done = await next_or_none(results, 5)
    assert done is not None
    assert done.id == task.id
    assert receiver.stats.confirmations == 0


# -- signatures --------------------------------------------------------------------------------


def signed_headers(
    body: bytes, *, at: float | None = None, msg_id: str = "msg_1"
) -> dict[str, str]:
    """Standard-Webhooks headers for *body*."""
    stamp = int(time.time() if at is None else at)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_payload(SECRET, msg_id, stamp, body),
    }


async def test_signed_callback_needs_no_get(server: FakeKlingServer) -> None:
    """A valid signature feeds the task in directly; bad or stale signatures get 401, and so
    does a missing one with ``require_signature``."""
    async with make_client(server) as client:
        receiver = WebhookReceiver.for_client(client, signing_secret=SECRET, require_signature=True)
        async with listening(receiver) as url, receiver, client.watch(timeout=10) as results:
            target = receiver.callback_url(url)
            task = await client.text_to_video("A beach")
            receiver.track(results, task)
            results.close()
            server.set_status(task.id, "succeed")
            body = json.dumps(server.render(task.id)).encode()
            before = polls(server)

            bad = signed_headers(body) | {"webhook-signature": "v1,AAAA"}
            assert await post(target, body, bad) == 401
            stale = signed_headers(body, at=time.time() - 600)
            assert await post(target, body, stale) == 401
            assert await post(target, body) == 401  # unsigned
            assert await next_or_none(results, 0.1) is None

            processing = json.dumps({"task_id": task.id, "task_status": "processing"}).encode()
            assert await post(target, processing, signed_headers(processing, msg_id="m0")) == 200
            assert await post(target, body, signed_headers(body)) == 200
            assert await post(target, body, signed_headers(body)) == 200  # replayed id
            finished = [done async for done in results]
        assert [done.id for done in finished] == [task.id]
        assert finished[0].videos
        assert polls(server) == before
        assert receiver.stats.direct == 1
        assert receiver.stats.rejected == {401: 3}
        assert receiver.stats.duplicates == 1


async def test_an_unsigned_callback_is_a_hint_even_with_a_signing_secret(
    server: FakeKlingServer,
) -> None:
    """Whether Kling signs legacy-path callbacks is unconfirmed: with a secret set, one that
    carries no signature is read as unsigned (confirmed by a GET), while a signature that
    does not verify is still refused."""
    async with make_client(server) as client:
        receiver = WebhookReceiver.for_client(client, signing_secret=SECRET)
        async with listening(receiver) as url, receiver, client.watch(timeout=10) as results:
            target = receiver.callback_url(url)
            task = await client.text_to_video("A beach")
            receiver.track(results, task)
            results.close()
            server.set_status(task.id, "succeed")
            body = json.dumps(server.render(task.id)).encode()
            before = polls(server)
            assert (
                await post(target, body, signed_headers(body) | {"webhook-signature": "v1,AAAA"})
                == 401
            )
            assert await post(target, body) == 200
            finished = [done async for done in results]
        assert [done.id for done in finished] == [task.id]
        assert polls(server) > before  # confirmed by a GET, not believed
        assert receiver.stats.direct == 0
        assert receiver.stats.rejected == {401: 1}


async def test_an_unsigned_status_never_makes_the_signed_one_a_duplicate(
    server: FakeKlingServer,
) -> None:
    """Anyone with the token can send an unsigned callback: one claiming "processing" first
    must not make the genuine signed "processing" read as already seen."""
    async with make_client(server) as client:
        receiver = WebhookReceiver.for_client(client, signing_secret=SECRET)
        async with listening(receiver) as url, receiver, client.watch(timeout=10) as results:
            target = receiver.callback_url(url)
            task = await client.text_to_video("A beach")
            receiver.track(results, task)
            processing = json.dumps({"task_id": task.id, "task_status": "processing"}).encode()
            assert await post(target, processing) == 200  # unsigned
            assert await post(target, processing, signed_headers(processing, msg_id="m1")) == 200
            assert await post(target, processing, signed_headers(processing, msg_id="m2")) == 200
            results.close()
        assert receiver.stats.duplicates == 1  # only the second signed one


def test_require_signature_needs_a_secret() -> None:
    with pytest.raises(kling.ConfigurationError, match="require_signature needs a signing_secret"):
        WebhookReceiver(require_signature=True)


def test_verify_signature_rules() -> None:
    """Rotation lists, header case, malformed timestamps and missing entries."""
    body = b'{"id": "1"}'
    headers = {name.upper(): value for name, value in signed_headers(body, at=1000).items()}
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUA=="
    assert verify_signature([other, SECRET], headers, body, now=1100) == "msg_1"
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_signature(SECRET, headers, body, now=2000)
    with pytest.raises(WebhookVerificationError, match="integer"):
        verify_signature(SECRET, headers | {"WEBHOOK-TIMESTAMP": "soon"}, body, now=1000)
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_signature(SECRET, {}, body)
    with pytest.raises(WebhookVerificationError, match="matches"):
        verify_signature(other, headers, body, now=1000)
    rotated = headers | {"WEBHOOK-SIGNATURE": "v1,bm9wZQ== " + headers["WEBHOOK-SIGNATURE"]}
    assert verify_signature(SECRET, rotated, body, now=1000) == "msg_1"
    with pytest.raises(kling.ConfigurationError):
        sign_payload("whsec_not base64!", "m", 1, body)


# -- configuration, logging --------------------------------------------------------------------


def test_callback_url_and_configuration() -> None:
    """The token is added to the query (replacing any old one); bad settings are refused."""
    receiver = WebhookReceiver(token=TOKEN, public_url="https://example.test/cb?a=1&token=old")
    assert receiver.callback_url() == f"https://example.test/cb?a=1&token={TOKEN}"
    assert receiver.callback_url("http://127.0.0.1:8000/x").endswith(f"/x?token={TOKEN}")
    generated = WebhookReceiver().callback_url("http://127.0.0.1/cb")
    assert len(generated.partition("token=")[2]) >= 24
    with pytest.raises(kling.ConfigurationError):
        WebhookReceiver().callback_url()
    with pytest.raises(kling.ConfigurationError):
        WebhookReceiver().callback_url("ftp://example.test/")
    with pytest.raises(kling.ConfigurationError):
        WebhookReceiver(token="short")
    with pytest.raises(kling.ConfigurationError):
        WebhookReceiver(max_body=0)
    with pytest.raises(kling.ConfigurationError):
        WebhookReceiver(signing_secret="whsec_???")


async def test_token_never_logged(
    server: FakeKlingServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither log lines nor repr ever show the token, whatever happens."""
    # On the package logger itself: another test (the CLI's) may have left it at ERROR.
    caplog.set_level(logging.DEBUG, logger="kling_async")
    caplog.set_level(logging.DEBUG)
    async with make_client(server) as client:
        receiver = WebhookReceiver.for_client(client, token=TOKEN)
        async with listening(receiver) as url, receiver, client.watch(timeout=10) as results:
            target = receiver.callback_url(url)
            task = await client.text_to_video("A beach", callback_url=target)
            receiver.track(results, task)
            results.close()
            await post(target, json.dumps({"task_id": task.id, "task_status": "succeed"}).encode())
            await post(target, b"junk")
            await post(f"{url}?token={TOKEN}x", b"{}")
            finished = [done async for done in results]
    assert finished
    assert "rejected a callback" in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(receiver)
    assert "redacted" in repr(receiver)


# -- ASGI ---------------------------------------------------------------------------------------


async def test_asgi_app_and_starlette_route() -> None:
    """The ASGI app answers like the aiohttp handler, on its own and as a Starlette route."""
    receiver = WebhookReceiver(token=TOKEN, max_body=256)
    ok = b'{"task_id": "1", "task_status": "processing"}'
    for app, path in (
        (asgi_app(receiver), "/"),
        (Starlette(routes=[starlette_route(receiver, "/kling/callback")]), "/kling/callback"),
    ):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answer = await http.post(path, params={TOKEN_PARAM: TOKEN}, content=ok)
            assert (answer.status_code, answer.text) == (200, "ok")
            assert (await http.post(path, content=ok)).status_code == 401
            assert (await http.post(path, params={"token": TOKEN}, content=b"[")).status_code == 400
            big = await http.post(path, params={"token": TOKEN}, content=b"x" * 300)
            assert big.status_code == 413

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(4):
                    yield b" " * 100

            streamed = await http.post(path, params={"token": TOKEN}, content=chunks())
            assert streamed.status_code == 413
            assert (await http.get(path)).status_code == 405
    assert receiver.stats.ignored == 2


async def test_asgi_lifespan_and_other_scopes() -> None:
    """Served on its own, the app completes the lifespan protocol and ignores websockets."""
    app = WebhookApp(WebhookReceiver())
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app({"type": "lifespan"}, receive, send)
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    await app({"type": "websocket"}, receive, send)
    assert len(sent) == 2

    disconnect = [{"type": "http.disconnect"}]

    async def gone() -> dict[str, Any]:
        return disconnect.pop(0)

    await app({"type": "http", "method": "POST", "headers": []}, gone, send)
    assert len(sent) == 2


# -- the receiver's bookkeeping, with a fake watcher -------------------------------------------


class FakeSink:
    """Records what the receiver asks of a watcher."""

    def __init__(self) -> None:
        self.added: list[tuple[str, bool]] = []
        self.updated: list[kling.Task] = []
        self.hinted: list[str] = []

    def add(self, task: kling.Task, *, has_callback: bool = False) -> None:
        """Record an added task."""
        self.added.append((task.id, has_callback))

    def update(self, task: kling.Task) -> None:
        """Record a fed-in state."""
        self.updated.append(task)

    def poll_soon(self, task_id: str) -> None:
        """Record a poll hint."""
        self.hinted.append(task_id)


def fake_task(task_id: str, status: kling.TaskStatus = kling.TaskStatus.PROCESSING) -> kling.Task:
    """A task as a create answer would describe it."""
    return kling.Task(id=task_id, kind=kling.TEXT_TO_VIDEO, status=status)


def callback(task_id: str, status: str) -> bytes:
    """A legacy callback body (a success carries its video, as a real one does)."""
    body: dict[str, object] = {"task_id": task_id, "task_status": status}
    if status == "succeed":
        body["task_result"] = {"videos": [{"id": "v", "url": f"https://cdn.test/{task_id}.mp4"}]}
    return json.dumps(body).encode()


async def test_tracking_limits_and_forgetting() -> None:
    """Finished tasks are not remembered, the oldest are evicted, forget() drops one."""
    sink = FakeSink()
    receiver = WebhookReceiver(token=TOKEN, max_tracked=2)
    receiver.track(sink, fake_task("done", kling.TaskStatus.SUCCEED))
    for name in ("a", "b", "c"):
        receiver.track(sink, fake_task(name))
    assert sink.added == [("done", True), ("a", True), ("b", True), ("c", True)]
    assert receiver.tracking == 2
    query = {TOKEN_PARAM: TOKEN}
    await receiver.handle({}, query, callback("a", "succeed"))
    assert receiver.stats.ignored == 1
    receiver.forget("b")
    receiver.forget("b")
    assert receiver.tracking == 1
    receiver.observe(TaskFinished(fake_task("c", kling.TaskStatus.SUCCEED)))
    assert receiver.tracking == 0
    with pytest.raises(kling.ConfigurationError):
        WebhookReceiver(max_tracked=0)


async def test_one_confirmation_at_a_time() -> None:
    """While a confirming GET runs, another terminal claim waits and is confirmed after it."""
    sink = FakeSink()
    release = anyio.Event()
    calls: list[str] = []

    async def slow_confirm(task: kling.Task) -> kling.Task:
        calls.append(task.status.value)
        await release.wait()
        # The first GET predates the failure; the second sees it.
        status = kling.TaskStatus.PROCESSING if len(calls) == 1 else kling.TaskStatus.FAILED
        return fake_task(task.id, status)

    receiver = WebhookReceiver(token=TOKEN, confirm=slow_confirm)
    query = {TOKEN_PARAM: TOKEN}
    async with receiver:
        receiver.track(sink, fake_task("t1"))
        await receiver.handle({}, query, callback("t1", "processing"))
        await receiver.handle({}, query, callback("t1", "succeed"))
        await receiver.handle({}, query, callback("t1", "failed"))
        await receiver.handle({}, query, callback("t1", "failed"))
        await wait_until(lambda: calls == ["succeed"])
        release.set()
        await wait_until(lambda: len(sink.updated) == 2)
    assert calls == ["succeed", "failed"]
    assert [task.status for task in sink.updated] == [
        kling.TaskStatus.PROCESSING,
        kling.TaskStatus.FAILED,
    ]
    assert receiver.stats.confirmations == 2
    assert receiver.stats.disagreements == 1
    assert receiver.stats.duplicates == 1
    assert receiver.tracking == 0
    assert sink.hinted == []


async def test_replay_window_forgets_old_message_ids() -> None:
    """A webhook-id is remembered for twice the tolerance, then forgotten."""
    now = [1_000_000.0]
    sink = FakeSink()
    receiver = WebhookReceiver(
        token=TOKEN, signing_secret=SECRET, tolerance=60, wall_clock=lambda: now[0]
    )
    receiver.track(sink, fake_task("t1"))
    query = {TOKEN_PARAM: TOKEN}
    body = callback("t1", "processing")
    assert await receiver.handle(signed_headers(body, at=now[0], msg_id="a"), query, body) == (
        200,
        "ok",
    )
    assert receiver.stats.duplicates == 0
    now[0] += 200
    later = callback("t1", "succeed")
    headers = signed_headers(later, at=now[0], msg_id="a")
    assert await receiver.handle(headers, query, later) == (200, "ok")
    assert [task.status for task in sink.updated] == [
        kling.TaskStatus.PROCESSING,
        kling.TaskStatus.SUCCEED,
    ]
    assert receiver.stats.direct == 1


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_c2hvcnQ="])
def test_an_empty_or_short_signing_secret_is_refused(secret: str) -> None:
    """``os.environ.get("KLING_WEBHOOK_SECRET", "")`` must not make a receiver that calls
    callbacks signed with an empty (forgeable) key verified."""
    with pytest.raises(kling.ConfigurationError, match="at least 16 bytes"):
        WebhookReceiver(signing_secret=secret)
    with pytest.raises(kling.ConfigurationError, match="at least 16 bytes"):
        sign_payload(secret, "m", 1, b"{}")
