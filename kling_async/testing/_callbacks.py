"""Delivery of task callbacks (kling-api.md §5) with optional drops and duplicates."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import aiohttp

from ._http import is_local_url
from ._records import CallbackRecord

__all__ = ["CallbackSender"]

logger = logging.getLogger(__name__)


class CallbackSender:
    """Posts callback bodies to loopback URLs and records every attempt."""

    def __init__(self, records: list[CallbackRecord], seed: int) -> None:
        self.records = records
        self._rng = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Create the HTTP session (must run inside the event loop)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        drop_rate: float,
        duplicate_rate: float,
        timeout: float,
    ) -> None:
        """Send *payload* to *url* zero, one or two times; failures are logged and ignored."""
        if not is_local_url(url):
            logger.warning("refusing callback to non-local URL %s", _without_query(url))
            self.records.append(CallbackRecord(url, payload, error="refused: not a local URL"))
            return
        if self._rng.random() < drop_rate:
            self.records.append(CallbackRecord(url, payload, dropped=True))
            return
        copies = 2 if self._rng.random() < duplicate_rate else 1
        for _ in range(copies):
            await self._post(url, payload, timeout)

    async def _post(self, url: str, payload: dict[str, Any], timeout: float) -> None:
        session = self._session
        if session is None:
            return
        try:
            limit = aiohttp.ClientTimeout(total=timeout)
            async with session.post(url, json=payload, timeout=limit) as response:
                await response.read()
                self.records.append(CallbackRecord(url, payload, status=response.status))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            logger.warning("callback to %s failed: %r", _without_query(url), exc)
            self.records.append(CallbackRecord(url, payload, error=repr(exc)))


def _without_query(url: str) -> str:
    """The URL without its query: callback URLs carry a secret token there."""
    return url.split("?", 1)[0]
