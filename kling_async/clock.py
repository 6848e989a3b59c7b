"""Time, behind a two-method interface so that tests can replace it.

The limiter, the task slots and the poll scheduler never call ``time`` or ``anyio.sleep``
directly; they take a :class:`Clock`. :class:`kling_async.testing.FakeClock` is the test double.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """A monotonic clock that can also sleep."""

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for *seconds* (at least 0)."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`anyio.sleep`."""

    def now(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep with :func:`anyio.sleep`."""
        await anyio.sleep(max(0.0, seconds))
