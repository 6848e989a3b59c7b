"""The streaming request of the transport, and the one place that translates aiohttp's errors."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kling_async.errors import APIConnectionError
from kling_async.transport import AiohttpTransport, InvalidURLError

SECRET = "sig-0123456789abcdef"
BODY = bytes(range(256)) * 64
PACKAGE = Path(__file__).resolve().parent.parent / "kling_async"


async def serve_whole(request: web.Request) -> web.Response:
    return web.Response(body=BODY, headers={"ETag": '"v1"'})


async def serve_cut(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = len(BODY)
    await response.prepare(request)
    await response.write(BODY[:1000])
    assert request.transport is not None
    request.transport.close()
    return response


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/whole")


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_get("/whole", serve_whole)
    app.router.add_get("/cut", serve_cut)
    app.router.add_get("/moved", redirect)
    async with TestServer(app, host="127.0.0.1", port=0) as running:
        yield running


async def read(transport: AiohttpTransport, url: str) -> tuple[int, bytes]:
    async with transport.stream("GET", url, headers={}, timeout=10) as response:
        chunks = [chunk async for chunk in response.iter_chunks(4096)]
        return response.status, b"".join(chunks)


async def test_stream_reads_the_body_in_chunks(server: TestServer) -> None:
    transport = AiohttpTransport()
    try:
        async with transport.stream("GET", str(server.make_url("/whole")), headers={}) as response:
            assert response.status == 200
            assert response.headers["etag"] == '"v1"'
            assert response.content_length == len(BODY)
            chunks = [chunk async for chunk in response.iter_chunks(4096)]
    finally:
        await transport.aclose()
    assert all(len(chunk) <= 4096 for chunk in chunks)
    assert b"".join(chunks) == BODY


async def test_stream_follows_redirects(server: TestServer) -> None:
    transport = AiohttpTransport()
    try:
        assert await read(transport, str(server.make_url("/moved"))) == (200, BODY)
    finally:
        await transport.aclose()


async def test_a_cut_body_is_a_connection_error_without_the_query(server: TestServer) -> None:
    transport = AiohttpTransport()
    url = str(server.make_url("/cut").with_query(sig=SECRET))
    try:
        with pytest.raises(APIConnectionError) as caught:
            await read(transport, url)
    finally:
        await transport.aclose()
    assert SECRET not in str(caught.value)
    assert "/cut" in str(caught.value)
    assert caught.value.__context__ is None  # aiohttp's error (and its request_info) is not chained
    assert caught.value.__cause__ is None


async def test_a_refused_connection_was_never_sent() -> None:
    transport = AiohttpTransport()
    try:
        with pytest.raises(APIConnectionError) as caught:
            await read(transport, f"http://127.0.0.1:1/v.mp4?sig={SECRET}")
    finally:
        await transport.aclose()
    assert caught.value.maybe_sent is False
    assert SECRET not in str(caught.value)
    assert caught.value.__context__ is None


async def test_an_unusable_url_is_its_own_error() -> None:
    transport = AiohttpTransport()
    try:
        with pytest.raises(InvalidURLError) as caught:
            await read(transport, "no-scheme-at-all")
    finally:
        await transport.aclose()
    assert "connection failed" in str(caught.value)


def test_only_the_transport_names_aiohttp_errors() -> None:
    """aiohttp's exceptions are translated in transport.py alone (the test fakes are apart)."""
    offenders = [
        f"{path.relative_to(PACKAGE).as_posix()}:{node.lineno}: aiohttp.{node.attr}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "transport.py" or path.parent != PACKAGE
        if not path.relative_to(PACKAGE).as_posix().startswith("testing/")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "aiohttp"
        and (node.attr.endswith(("Error", "Exception")) or node.attr == "InvalidURL")
    ]
    assert offenders == []
