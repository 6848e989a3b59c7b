"""The thin HTTP layer: send one request, get status, headers and body back.

This is the only module that knows aiohttp's exceptions; they are translated here into
:class:`~kling_async.APIConnectionError` / :class:`~kling_async.APITimeoutError`, with
``maybe_sent`` telling the create logic whether the request may have reached the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import attrs

from .errors import APIConnectionError, APITimeoutError

__all__ = ["AiohttpTransport", "RawResponse", "Transport"]


@attrs.frozen
class RawResponse:
    """What came back: status, headers and the whole body.

    ``headers`` is looked up with lower-case names: a transport either lower-cases them or
    passes a case-insensitive mapping (aiohttp's own).
    """

    status: int
    headers: Mapping[str, str]
    body: bytes


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


class AiohttpTransport:
    """A :class:`Transport` over one shared :class:`aiohttp.ClientSession`.

    Args:
        session: an existing session to use (and not close); by default one is created lazily,
            inside the running event loop, with a connection pool of ``connection_limit``.
        connection_limit: the pool size; keep it at or above the scheduler's checks in flight so
            that waiting for a pooled connection does not eat a request's timeout.
        connect_timeout: seconds allowed to open a connection.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        connection_limit: int = 100,
        connect_timeout: float = 10.0,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._limit = connection_limit
        self._connect_timeout = connect_timeout
        # One ClientTimeout per distinct total: building one per request is measurable at
        # thousands of status checks a second.
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                # Cookies from one answer must not ride along on the next request.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

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
        """Send one request; translate aiohttp's failures into the library's errors."""
        session = self._get_session()
        client_timeout = self._timeouts.get(timeout)
        if client_timeout is None:
            client_timeout = aiohttp.ClientTimeout(
                total=timeout, sock_connect=self._connect_timeout
            )
            self._timeouts[timeout] = client_timeout
        try:
            async with session.request(
                method,
                url,
                # aiohttp copies a dict without changing it; anything else becomes one.
                headers=headers if isinstance(headers, dict) else dict(headers),
                json=json,
                params=params,
                timeout=client_timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                # aiohttp's headers are already case-insensitive; copying them costs per request.
                return RawResponse(status=response.status, headers=response.headers, body=body)
        except aiohttp.ConnectionTimeoutError as exc:
            raise APITimeoutError(f"{method} {url}: connect timed out", maybe_sent=False) from exc
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise APITimeoutError(f"{method} {url}: timed out after sending") from exc
        except aiohttp.ClientConnectorError as exc:
            raise APIConnectionError(
                f"{method} {url}: cannot connect ({exc.os_error})", maybe_sent=False
            ) from exc
        except aiohttp.ClientError as exc:
            raise APIConnectionError(
                f"{method} {url}: connection failed ({type(exc).__name__})"
            ) from exc

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
