"""Time, behind a two-method interface so that tests can replace it.

The limiter, the task slots and the poll scheduler never call ``time`` or ``anyio.sleep``
directly; they take a [`Clock`][kling_async.clock.Clock]. ``kling_async.testing.FakeClock`` is the test double.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
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

    def deadline(self, seconds: float | None) -> AbstractContextManager[anyio.CancelScope, bool]:
        """A scope that is cancelled, quietly, once *seconds* have passed on this clock.

        Like ``anyio.move_on_after`` but on this clock's time, so that a test on a fake clock
        covers the deadline too; ``None`` means no deadline. The scope's ``cancelled_caught``
        says whether the deadline ended the block.
        """
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``anyio.sleep``."""

    # time.monotonic itself rather than a method calling it: the scheduler reads the clock
    # twice per status check, and a Python frame costs more than the reading.
    now = staticmethod(time.monotonic)
    """Return ``time.monotonic()``."""

    async def sleep(self, seconds: float) -> None:
        """Sleep with ``anyio.sleep``."""
        await anyio.sleep(max(0.0, seconds))

    def deadline(self, seconds: float | None) -> AbstractContextManager[anyio.CancelScope, bool]:
        """``anyio.move_on_after`` (wall time is this clock's time)."""
        return anyio.move_on_after(seconds)
