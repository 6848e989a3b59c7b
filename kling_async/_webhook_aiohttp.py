"""Serving a ``WebhookReceiver`` from ``aiohttp.web`` (``webhooks_asgi`` does it for ASGI)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from .webhooks import WebhookReceiver

__all__ = ["aiohttp_handler"]


def aiohttp_handler(
    receiver: WebhookReceiver,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Serve *receiver* from ``aiohttp.web``: ``app.router.add_post(path, handler)``.

    Args:
        receiver: the receiver to feed.

    Returns:
        a request handler that reads at most ``receiver.max_body + 1`` bytes.
    """
    from aiohttp import web  # lazily: importing the core must not load the server half of aiohttp

    async def handle(request: web.Request) -> web.StreamResponse:
        limit = receiver.max_body
        declared = request.content_length
        if declared is not None and declared > limit:
            status, text = receiver.refuse_oversized(peer=request.remote)
            return web.Response(status=status, text=text)
        body = bytearray()
        while len(body) <= limit:
            chunk = await request.content.read(limit + 1 - len(body))
            if not chunk:
                break
            body.extend(chunk)
        status, text = await receiver.handle(
            request.headers, request.query, bytes(body), peer=request.remote
        )
        return web.Response(status=status, text=text)

    return handle
