"""No exception the library raises carries the API key anywhere in its chain (issue 14.4).

Error trackers record an exception's whole chain (``__cause__``, ``__context__``, ``args`` and
attributes), so the key must not be reachable from any of them. The walk runs over every error
the emulator's fault suite makes the client raise, and over a server that answers malformed HTTP
(aiohttp's ``ClientResponseError`` shows the request headers in its repr).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kling_async as kling
from kling_async.download import Downloader
from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.testing._config import API_FAULTS

from .conftest import API_KEY, FAST_POLL, FAST_RETRY

_MAX_WALK = 200
QUICK_RETRY = kling.RetryPolicy(max_retries=2, base=0.01, cap=0.05, jitter=0.0)
"""Few retries: every queued fault run ends in an error soon."""


def reachable_text(error: BaseException) -> Iterator[str]:
    """The repr of everything reachable from *error*: its chain, args, attributes, groups."""
    seen: set[int] = set()
    stack: list[object] = [error]
    while stack and len(seen) < _MAX_WALK:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield repr(item)
        if not isinstance(item, BaseException):
            continue
        yield str(item)
        stack.extend(item.args)
        stack.extend(vars(item).values())
        stack.extend(linked for linked in (item.__cause__, item.__context__) if linked is not None)
        grouped = getattr(item, "exceptions", None)  # an exception group (3.11+ or backport)
        if isinstance(grouped, tuple):
            stack.extend(grouped)


def assert_no_key(error: BaseException) -> None:
    for text in reachable_text(error):
        assert API_KEY not in text, f"the API key is reachable from {type(error).__name__}"


def test_the_walk_finds_a_key_hidden_in_a_chain() -> None:
    """The check itself can fail: a key three links down, in an attribute, is found."""

    class Holder:
        def __repr__(self) -> str:
            return f"Holder(Authorization='Bearer {API_KEY}')"

    inner = RuntimeError("inner")
    inner.holder = Holder()  # type: ignore[attr-defined]
    try:
        try:
            raise inner
        except RuntimeError:
            raise ValueError("middle")  # noqa: B904 - an implicit __context__ on purpose
    except ValueError as middle:
        outer = kling.APIConnectionError("outer")
        outer.__cause__ = middle
    with pytest.raises(AssertionError, match="reachable"):
        assert_no_key(outer)


@contextlib.asynccontextmanager
async def malformed_http_server() -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that answers every request with a broken status line."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read(65536)
            writer.write(b"HTTP/1.1 abc\r\n\r\n")
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_malformed_http_answer_leaves_no_key_in_the_chain() -> None:
    """Regression: APIConnectionError was raised from ClientResponseError, whose repr shows
    ``Authorization: Bearer <key>``."""
    async with (
        malformed_http_server() as url,
        kling.KlingClient(
            api_key=API_KEY, provider=kling.local_emulator(url), retry=FAST_RETRY, timeout=5.0
        ) as client,
    ):
        with pytest.raises(kling.APIConnectionError) as caught:
            await client.get_task("123")
        assert_no_key(caught.value)
        with pytest.raises(kling.KlingError) as created:
            await client.text_to_video("A beach")
        assert_no_key(created.value)


async def test_connection_refused_leaves_no_key_in_the_chain() -> None:
    """A port nobody listens on: the connect error carries no request either."""
    async with malformed_http_server() as url:
        pass  # closed again: the port is now (very likely) free
    async with kling.KlingClient(
        api_key=API_KEY, provider=kling.local_emulator(url), retry=FAST_RETRY, timeout=5.0
    ) as client:
        with pytest.raises(kling.APIConnectionError) as caught:
            await client.get_task("123")
    assert_no_key(caught.value)


Operation = Callable[[kling.KlingClient, kling.Task], Awaitable[Any]]


async def _create(client: kling.KlingClient, _: kling.Task) -> Any:
    return await client.text_to_video("A beach at dusk")


async def _query(client: kling.KlingClient, task: kling.Task) -> Any:
    return await client.get_task(task)


async def _list(client: kling.KlingClient, _: kling.Task) -> Any:
    return await client.list_tasks()


async def _wait(client: kling.KlingClient, task: kling.Task) -> Any:
    return await client.wait(task, timeout=1.0)


_OPERATIONS: dict[str, Operation] = {
    "create": _create,
    "query": _query,
    "list": _list,
    "wait": _wait,
}


async def test_every_fault_suite_error_is_free_of_the_key() -> None:
    """Each API fault, on every operation, until retries run out: the errors hold no key."""
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.1)
    errors: list[BaseException] = []
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as server,
        kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=QUICK_RETRY,
            poll=FAST_POLL,
            # Short enough that a "slow" answer times out.
            timeout=0.3,
        ) as client,
    ):
        task = await client.text_to_video("A task to query")
        for fault in sorted(API_FAULTS):
            for operation in _OPERATIONS.values():
                server.faults.next_request(fault, seconds=0.6, times=QUICK_RETRY.max_retries + 3)
                try:
                    await operation(client, task)
                except Exception as exc:
                    errors.append(exc)
                server.faults.clear()
    for error in errors:
        assert isinstance(error, kling.KlingError), repr(error)
        assert_no_key(error)
    # The suite did exercise the error paths: each family of failure was raised at least once.
    raised = {type(error) for error in errors}
    for family in (
        kling.APIConnectionError,
        kling.APITimeoutError,
        kling.ServerError,
        kling.ResponseParseError,
        kling.SubmitUncertainError,
    ):
        assert any(issubclass(kind, family) for kind in raised), (family, raised)


async def test_download_errors_do_not_chain_the_signed_url(tmp_path: Path) -> None:
    """A CDN answering malformed HTTP: the DownloadError's chain holds no signed query token."""
    secret = "sig-0123456789-do-not-leak"
    async with malformed_http_server() as url:
        task = kling.Task(
            id="t1",
            kind=TEXT_TO_VIDEO,
            status=kling.TaskStatus.SUCCEED,
            videos=(kling.Video(id="v1", url=f"{url}/v1.mp4?sig={secret}"),),
        )
        async with Downloader(retry=QUICK_RETRY) as downloader:
            with pytest.raises(kling.DownloadError) as caught:
                await downloader.download(task, tmp_path)
    for text in reachable_text(caught.value):
        assert secret not in text
