"""A FastAPI service that submits videos and streams them as they finish, driven by callbacks.

Routes:

* ``POST /videos`` ``{"prompt": "...", "duration": "5", "aspect_ratio": "16:9"}`` submits a task
  whose ``callback_url`` points back at this service, and answers ``{"task_id": ...}`` at once.
* ``POST /kling/callback?token=...`` is where Kling (or CometAPI) posts status changes. A callback
  is a hint: unsigned terminal states are confirmed with one GET before anything is streamed.
* ``GET /events`` streams finished tasks as server-sent events (``event: finished``), resuming
  after ``Last-Event-ID``; ``?limit=N`` ends the stream after N events.

Tasks are also polled every ``callback_interval`` seconds as a safety net, so a callback that
never comes delays a result but never loses it.

Run it (the API key from ``$COMETAPI_KEY``; the public URL is where Kling can reach this app)::

    KLING_PUBLIC_URL=https://videos.example.com uvicorn examples.fastapi_app:app

Set ``KLING_CALLBACK_TOKEN`` (16+ characters) to keep the callback URL valid across restarts, and
``KLING_WEBHOOK_SECRET`` if a webhook secret is configured in the Kling console (direct API only).

Optional OpenTelemetry: with ``pip install "kling-async[otel]"`` and ``KLING_OTEL=1`` the client is
instrumented (``kling_async.otel.instrument``) on the global providers, which your usual SDK
setup configures, e.g. ``opentelemetry-instrument uvicorn examples.fastapi_app:app`` with the
``opentelemetry-distro`` and ``opentelemetry-instrumentation-fastapi`` packages. Each
``POST /videos`` request's span is then the parent of its task's span, and the task's status
checks, callbacks and result join that trace.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectSendStream
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

import kling_async as kling
from kling_async.log_redaction import redact_access_logs
from kling_async.webhooks import WebhookReceiver
from kling_async.webhooks_asgi import starlette_route

logger = logging.getLogger("fastapi_app")

CALLBACK_PATH = "/kling/callback"
HISTORY = 1000
"""Finished tasks kept for ``Last-Event-ID`` resumption."""
KEEPALIVE_SECONDS = 15.0
"""An SSE comment this often keeps proxies from closing an idle stream."""


class VideoRequest(BaseModel):
    """The body of ``POST /videos``."""

    prompt: str = Field(min_length=1)
    duration: str = "5"
    aspect_ratio: str | None = None
    mode: Literal["std", "pro"] | None = None


class Submitted(BaseModel):
    """The answer of ``POST /videos``."""

    task_id: str
    status: str
    external_task_id: str | None = None


@attrs.define
class Finished:
    """Fans finished tasks out to every open ``/events`` stream, keeping a short history."""

    history: deque[tuple[int, dict[str, Any]]] = attrs.Factory(lambda: deque(maxlen=HISTORY))
    listeners: set[MemoryObjectSendStream[tuple[int, dict[str, Any]]]] = attrs.Factory(set)
    last_id: int = 0

    def publish(self, task: kling.Task) -> None:
        """Record *task* and hand it to every listener (a listener too slow to keep up is cut)."""
        self.last_id += 1
        item = (self.last_id, _task_json(task))
        self.history.append(item)
        for listener in list(self.listeners):
            try:
                listener.send_nowait(item)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):  # noqa: PERF203 - one stuck listener must not stop the others
                self.listeners.discard(listener)
                listener.close()

    def close(self) -> None:
        """End every stream (shutdown)."""
        for listener in self.listeners:
            listener.close()
        self.listeners.clear()


@attrs.define
class _State:
    """What the lifespan sets up; strictly private to this module."""

    client: kling.KlingClient | None = None
    results: kling.Watcher | None = None


def _task_json(task: kling.Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "status": task.status.value,
        "status_msg": task.status_msg,
        "external_task_id": task.external_task_id,
        "videos": [{"id": video.id, "url": video.url} for video in task.videos],
    }


def create_app(
    *,
    public_url: str | None = None,
    client_factory: Callable[[WebhookReceiver], kling.KlingClient] | None = None,
    token: str | None = None,
    signing_secret: str | None = None,
    telemetry: Callable[[kling.KlingClient], object] | None = None,
) -> FastAPI:
    """Build the app; nothing touches the network until its lifespan starts.

    Args:
        public_url: the URL Kling can reach this app at; ``$KLING_PUBLIC_URL`` when omitted.
        client_factory: makes the client in the lifespan, given the receiver to pass as
            ``webhook=``; ``KlingClient(webhook=receiver)`` (configured from the environment)
            when omitted.
        token: the callback token; ``$KLING_CALLBACK_TOKEN``, else a random one.
        signing_secret: the Kling webhook secret; ``$KLING_WEBHOOK_SECRET`` when omitted.
        telemetry: called with the client once it exists, to instrument it; when omitted and
            ``$KLING_OTEL`` is set, ``kling_async.otel.instrument`` (global providers).

    Returns:
        the FastAPI application.
    """
    base = (public_url or os.environ.get("KLING_PUBLIC_URL", "")).rstrip("/")
    # uvicorn's access log prints "POST /kling/callback?token=..."; the token is a secret.
    redact_access_logs()
    state = _State()
    finished = Finished()

    def default_client(receiver: WebhookReceiver) -> kling.KlingClient:
        return kling.KlingClient(webhook=receiver)

    make_client = client_factory or default_client
    if telemetry is None and os.environ.get("KLING_OTEL"):
        # Imported only when asked for: the otel extra is optional.
        from kling_async.otel import instrument

        telemetry = instrument
    # The route needs the receiver before the client exists (the client is made in the
    # lifespan); the client, given it as webhook=, fills in callback URLs, and its watcher
    # checks a task as soon as its callback says it finished.
    receiver = WebhookReceiver(
        token=token or os.environ.get("KLING_CALLBACK_TOKEN") or None,
        signing_secret=signing_secret or os.environ.get("KLING_WEBHOOK_SECRET") or None,
        public_url=f"{base}{CALLBACK_PATH}" if base else None,
    )

    async def pump(results: kling.Watcher) -> None:
        try:
            async for task in results:
                finished.publish(task)
        except kling.KlingError:
            logger.exception("watching tasks stopped")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The client fills in callback_url on every submission. An hour per task: a task
        # that never finishes must not be watched forever.
        async with (
            make_client(receiver) as client,
            client.watch(task_timeout=3600) as results,
            anyio.create_task_group() as group,
        ):
            if telemetry is not None:
                telemetry(client)
            state.client, state.results = client, results
            group.start_soon(pump, results)
            try:
                yield
            finally:
                state.client = state.results = None
                finished.close()
                group.cancel_scope.cancel()

    app = FastAPI(title="kling_async webhook example", lifespan=lifespan)
    app.router.routes.append(starlette_route(receiver, CALLBACK_PATH))

    @app.post("/videos", status_code=202)
    async def submit(body: VideoRequest) -> Submitted:
        """Submit a text-to-video task that reports back by callback."""
        if state.client is None or state.results is None:
            raise HTTPException(503, "starting up")
        try:
            request = kling.TextToVideo(
                prompt=body.prompt,
                duration=body.duration,
                aspect_ratio=body.aspect_ratio,
                mode=body.mode,
            )
            task = await state.client.submit(request)
        except kling.ConfigurationError as exc:
            raise HTTPException(500, str(exc)) from None
        except kling.InvalidRequestError as exc:
            raise HTTPException(422, str(exc)) from None
        except kling.KlingError as exc:
            raise HTTPException(502, str(exc)) from None
        # Polled only every callback_interval as a safety net: the client knows the callback
        # will come, because it filled in the callback URL itself.
        state.results.add(task)
        return Submitted(
            task_id=task.id, status=task.status.value, external_task_id=task.external_task_id
        )

    @app.get("/events")
    async def events(
        limit: int | None = None, last_event_id: str | None = Header(default=None)
    ) -> StreamingResponse:
        """Stream finished tasks as server-sent events."""
        after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
        send, receive = anyio.create_memory_object_stream[tuple[int, dict[str, Any]]](HISTORY)
        backlog = [item for item in finished.history if item[0] > after]
        finished.listeners.add(send)

        async def stream() -> AsyncIterator[str]:
            sent = 0
            try:
                for event_id, data in backlog:
                    yield _sse(event_id, data)
                    sent += 1
                    if limit is not None and sent >= limit:
                        return
                while True:
                    item = None
                    with anyio.move_on_after(KEEPALIVE_SECONDS):
                        item = await receive.receive()
                    if item is None:
                        yield ": keep-alive\n\n"
                        continue
                    yield _sse(*item)
                    sent += 1
                    if limit is not None and sent >= limit:
                        return
            except anyio.EndOfStream:
                return
            finally:
                finished.listeners.discard(send)
                send.close()
                receive.close()

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    return app


def _sse(event_id: int, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: finished\ndata: {json.dumps(data)}\n\n"


app = create_app()
"""The app for ``uvicorn examples.fastapi_app:app`` (configured from the environment)."""
