"""The thin HTTP layer: send one request, get status, headers and body back.

Two shapes of request: [`Transport.request`][kling_async.transport.Transport.request] reads a
whole (small) API answer; [`StreamingTransport.stream`][kling_async.transport.StreamingTransport.stream]
opens an answer whose body is read in chunks (a result video, into a file).

This is the only module that knows aiohttp's exceptions; they are translated here, in one place
(``_translated``), into [`APIConnectionError`][kling_async.errors.APIConnectionError] /
[`APITimeoutError`][kling_async.errors.APITimeoutError], with ``maybe_sent`` telling the create
logic whether the request may have reached the server. The translated errors chain nothing:
aiohttp's own carry the request headers (and so the key) and the URL (a CDN link's signed query).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, NamedTuple, NoReturn, Protocol

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from ._deadlines import Deadlines
from .errors import APIConnectionError, APITimeoutError

__all__ = [
    "AiohttpTransport",
    "InvalidURLError",
    "RawResponse",
    "StreamedResponse",
    "StreamingTransport",
    "Transport",
]


class InvalidURLError(APIConnectionError):
    """The URL cannot be requested at all (no host, a bad scheme): nothing was sent.

    A subclass of [`APIConnectionError`][kling_async.errors.APIConnectionError], so the API side
    treats it as it always did; a download gives up on it at once instead of retrying.
    """


class RawResponse(NamedTuple):
    """What came back: status, headers and the whole body (immutable).

    ``headers`` is looked up with lower-case names: a transport either lower-cases them or
    passes a case-insensitive mapping (aiohttp's own). A named tuple rather than an attrs
    class: one is built per request, and a tuple costs a fraction of a frozen class to make.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes


_new_tuple = tuple.__new__


class Transport(Protocol):
    """Sends one HTTP request. Implementations must not retry; the client decides that.

    *headers* is shared by many requests and must not be modified; copy it to change it.
    """

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> RawResponse:
        """Send the request and read the whole answer."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class StreamedResponse(Protocol):
    """An answer whose body has not been read yet; it stays open until its block ends.

    ``headers`` is looked up with lower-case names, as for [`RawResponse`][kling_async.transport.RawResponse].
    """

    @property
    def status(self) -> int:
        """The HTTP status code."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers."""
        ...

    @property
    def content_length(self) -> int | None:
        """The announced body length (``Content-Length``), if any."""
        ...

    def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        """Iterate over the body in chunks of at most *size* bytes.

        A failure while reading raises the same errors as
        [`Transport.request`][kling_async.transport.Transport.request].
        """
        ...


class StreamingTransport(Transport, Protocol):
    """A [`Transport`][kling_async.transport.Transport] that can also stream an answer's body."""

    def stream(
        self, method: str, url: str, *, headers: Mapping[str, str], timeout: float | None = None
    ) -> AbstractAsyncContextManager[StreamedResponse]:
        """Send a request and open its answer; redirects are followed.

        Messages of the errors raised never show the URL's query (a signed link's token).

        Args:
            method: the HTTP method.
            url: the URL, which may carry a signed query.
            headers: the request headers (not modified).
            timeout: seconds for the whole exchange, body included; ``None`` for none.
        """
        ...


_PARSED_URLS = 1024
"""API URLs an [`AiohttpTransport`][kling_async.transport.AiohttpTransport] keeps parsed: under
1 MB (a parsed URL with what aiohttp caches on it is about 850 bytes), and more than the tasks
most watchers track."""


class AiohttpTransport:
    """A [`StreamingTransport`][kling_async.transport.StreamingTransport] over one ``aiohttp.ClientSession``.

    The session it creates sends no default headers, keeps no cookies (one answer's cookies
    never ride along on the next request) and ignores proxy settings from the environment.

    Args:
        session: an existing session to use (and not close); by default one is created lazily,
            inside the running event loop, with a connection pool of ``connection_limit``.
        connection_limit: the pool size; keep it at or above the scheduler's checks in flight so
            that waiting for a pooled connection does not eat a request's timeout.
        connect_timeout: seconds allowed to open a connection (``None``: only the request's
            own timeout applies).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        connection_limit: int = 100,
        connect_timeout: float | None = 10.0,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._limit = connection_limit
        self._connect_timeout = connect_timeout
        # One ClientTimeout per distinct total: building one per request is measurable at
        # thousands of status checks a second.
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}
        # Parsed API URLs by their text. A status check asks for the same URL every few
        # seconds, and parsing one costs aiohttp about 2 us: yarl's own cache holds only 128,
        # fewer than the tasks a watcher usually tracks, so cycling through them misses always.
        self._urls: dict[str, URL] = {}
        self._headers: tuple[Mapping[str, str], CIMultiDict[str]] | None = None
        self._deadlines = Deadlines()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                # Cookies from one answer must not ride along on the next request.
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    def _prepared(self, headers: Mapping[str, str]) -> CIMultiDict[str]:
        """*headers* as aiohttp's own mapping, kept for the next request that passes them.

        The pipeline passes one dict to every request until its Authorization changes (the
        protocol forbids changing a passed mapping), and aiohttp would otherwise convert it
        afresh on each, half a microsecond a status check. Other headers replace it.
        """
        last = self._headers
        if last is None or last[0] is not headers:
            last = self._headers = (headers, CIMultiDict(headers))
        return last[1]

    def _timeout(self, total: float | None) -> aiohttp.ClientTimeout:
        client_timeout = self._timeouts.get(total)
        if client_timeout is None:
            client_timeout = aiohttp.ClientTimeout(total=total, sock_connect=self._connect_timeout)
            self._timeouts[total] = client_timeout
        return client_timeout

    def _parsed(self, url: str) -> URL | str:
        """*url* parsed, from the cache when it was asked for lately (the text if it will not
        parse: aiohttp then words the error as for any bad URL)."""
        try:
            parsed = URL(url)
        except (TypeError, ValueError):
            return url
        if len(self._urls) >= _PARSED_URLS:
            self._urls.clear()  # a cheap bound: the URLs still in use come back at once
        self._urls[url] = parsed
        return parsed

    async def request(  # noqa: RET503 (ends in _raise_unchained, which never returns)
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> RawResponse:
        """Send one request; translate aiohttp's failures into the library's errors.

        *timeout* bounds the whole request, from waiting for a pooled connection to the last
        byte, as aiohttp's ``ClientTimeout(total=...)`` would; one timer keeps it for every
        request in flight (``_deadlines``), where aiohttp would arm a timer per request.
        """
        session = self._session
        if session is None:
            session = self._get_session()
        parsed = self._urls.get(url)
        # After everything that can raise, so that a failure here leaves no deadline behind
        # (only dictionary look-ups follow). No limit at 0 or below, as with aiohttp's own.
        ticket = self._deadlines.start(timeout) if timeout is not None and timeout > 0 else None
        # With the deadline kept above, aiohttp keeps only the connect timeout; with no task to
        # cancel (never so under asyncio), aiohttp keeps the whole limit itself.
        total = None if ticket is not None else timeout
        client_timeout = self._timeouts.get(total)
        if client_timeout is None:
            client_timeout = self._timeout(total)
        try:
            async with session.request(
                method,
                parsed if parsed is not None else self._parsed(url),
                headers=self._prepared(headers),
                json=json,
                params=params,
                timeout=client_timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                # aiohttp's headers are already case-insensitive; copying them costs per request.
                # tuple.__new__: a named tuple's own __new__ is a Python function, per request.
                return _new_tuple(RawResponse, (response.status, response.headers, body))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = _translated(exc, f"{method} {url}")
        except asyncio.CancelledError:
            if ticket is None or not Deadlines.expired(ticket):
                raise
            error = _translated(asyncio.TimeoutError(), f"{method} {url}")
        finally:
            if ticket is not None:
                Deadlines.end(ticket)
        _raise_unchained(error)

    def stream(
        self, method: str, url: str, *, headers: Mapping[str, str], timeout: float | None = None
    ) -> AbstractAsyncContextManager[StreamedResponse]:
        """Send a request and open its answer (see [`StreamingTransport.stream`][kling_async.transport.StreamingTransport.stream])."""
        return _Opening(self._get_session(), method, url, dict(headers), self._timeout(timeout))

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        # The deadlines stay: requests still running on a session passed in keep their limits.
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None


def _shown(url: str) -> str:
    """*url* as error messages show it: without query, fragment or credentials."""
    if not any(mark in url for mark in "?#@"):
        return url  # the common case, an API path: shown exactly as requested
    try:
        return str(URL(url).with_query(None).with_fragment(None).with_user(None))
    except (TypeError, ValueError):
        return "<unparseable URL>"


def _translated(exc: BaseException, where: str) -> APIConnectionError:
    """The library's error for aiohttp's *exc* (the one place that maps them).

    Call it inside the ``except`` block and raise the result with ``_raise_unchained`` outside it.
    """
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return APITimeoutError(f"{where}: connect timed out", maybe_sent=False)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return APITimeoutError(f"{where}: timed out after sending")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return APIConnectionError(f"{where}: cannot connect ({exc.os_error})", maybe_sent=False)
    # The same words either way; only the class tells a download not to try again.
    kind = InvalidURLError if isinstance(exc, aiohttp.InvalidURL) else APIConnectionError
    return kind(f"{where}: connection failed ({type(exc).__name__})")


def _raise_unchained(error: APIConnectionError) -> NoReturn:
    """Raise *error* with no ``__context__``.

    aiohttp's exception must not ride along: its request_info repr shows the request headers,
    Authorization included, and error trackers record the whole chain. Raising outside the
    ``except`` block is not enough on Python 3.10, where a coroutine still chains the exception it
    handled last.
    """
    try:
        raise error
    finally:
        error.__context__ = None


class _Opening:
    """The context manager returned by ``AiohttpTransport.stream``. Strictly private."""

    __slots__ = ("_headers", "_method", "_request", "_session", "_timeout", "_url")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        headers: dict[str, str],
        timeout: aiohttp.ClientTimeout,
    ) -> None:
        self._session = session
        self._method = method
        self._url = url
        self._headers = headers
        self._timeout = timeout
        self._request: Any = None

    async def __aenter__(self) -> StreamedResponse:
        where = f"{self._method} {_shown(self._url)}"
        try:
            self._request = self._session.request(
                self._method, self._url, headers=self._headers, timeout=self._timeout
            )
            response = await self._request.__aenter__()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = _translated(exc, where)
        else:
            return _Streamed(response, where)
        self._request = None
        _raise_unchained(error)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        request, self._request = self._request, None
        if request is not None:
            # Releases the connection; the block's own error (if any) propagates unchanged.
            await request.__aexit__(exc_type, exc, tb)


class _Streamed:
    """An open aiohttp answer whose reading errors are translated. Strictly private."""

    __slots__ = ("_response", "_where")

    def __init__(self, response: aiohttp.ClientResponse, where: str) -> None:
        self._response = response
        self._where = where

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers (case-insensitive)."""
        return self._response.headers

    @property
    def content_length(self) -> int | None:
        """The announced body length, if any."""
        return self._response.content_length

    def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        """Iterate over the body in chunks of at most *size* bytes."""
        return _Chunks(self._response.content.iter_chunked(size), self._where)


class _Chunks:
    """An async iterator over a body, translating aiohttp's errors. Strictly private."""

    __slots__ = ("_chunks", "_where")

    def __init__(self, chunks: AsyncIterator[bytes], where: str) -> None:
        self._chunks = chunks
        self._where = where

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = _translated(exc, self._where)
        _raise_unchained(error)
