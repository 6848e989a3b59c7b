"""The callback receiver as an ASGI app, for Starlette, FastAPI or any ASGI server.

[`WebhookApp`][kling_async.webhooks_asgi.WebhookApp] is plain ASGI and imports nothing; [`starlette_route`][kling_async.webhooks_asgi.starlette_route] wraps it in a
Starlette ``Route`` (install the ``webhooks`` extra for Starlette).

FastAPI example::

    receiver = WebhookReceiver.for_client(client)
    app.router.routes.append(starlette_route(receiver, "/kling/callback"))
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl

from .webhooks import WebhookReceiver

if TYPE_CHECKING:
    from starlette.routing import Route

__all__ = ["WebhookApp", "asgi_app", "starlette_route"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]


class WebhookApp:
    """An ASGI app that answers Kling callbacks with a [`WebhookReceiver`][kling_async.webhooks.WebhookReceiver].

    It accepts ``POST`` only (405 otherwise), refuses a declared or actual body over
    ``receiver.max_body`` with 413 without reading the rest, and answers ``lifespan`` messages so
    it can also be served on its own.

    Args:
        receiver: the receiver to feed.
    """

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection.

        Args:
            scope: the ASGI scope.
            receive: the ASGI receive channel.
            send: the ASGI send channel.
        """
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await _answer(send, 405, "method not allowed", allow="POST")
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        client = scope.get("client")
        peer = str(client[0]) if client else None
        limit = self.receiver.max_body
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, *self.receiver.refuse_oversized(peer=peer))
            return
        body = bytearray()
        more = True
        while more and len(body) <= limit:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            more = bool(message.get("more_body", False))
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        # Only the first max_body + 1 bytes matter: handle() refuses anything that long.
        status, text = await self.receiver.handle(
            headers, query, bytes(body[: limit + 1]), peer=peer
        )
        await _answer(send, status, text)


def asgi_app(receiver: WebhookReceiver) -> WebhookApp:
    """Return an ASGI app serving *receiver* (mount it, or serve it on its own).

    Args:
        receiver: the receiver to feed.

    Returns:
        the app.
    """
    return WebhookApp(receiver)


def starlette_route(
    receiver: WebhookReceiver, path: str = "/kling/callback", *, name: str = "kling_callback"
) -> Route:
    """Return a Starlette ``Route`` that POSTs to *path* reach *receiver*.

    Works in FastAPI too: ``app.router.routes.append(starlette_route(receiver))``.

    Args:
        receiver: the receiver to feed.
        path: the route's path.
        name: the route's name, for ``url_path_for``.

    Returns:
        the route.
    """
    from starlette.routing import Route  # lazily: Starlette is an optional extra

    return Route(path, endpoint=WebhookApp(receiver), methods=["POST"], name=name)


async def _answer(send: Send, status: int, text: str, *, allow: str | None = None) -> None:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    if allow is not None:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
