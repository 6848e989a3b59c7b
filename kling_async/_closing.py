"""One way to be a context manager: ``async with x:`` (or ``with x:``) returns ``x`` and runs its hooks.

``AsyncScoped`` is the one place that spells out ``__aenter__``/``__aexit__``, and ``Scoped``
``__enter__``/``__exit__``; a class says what entering and leaving do in ``_enter`` and
``_exit``. ``AsyncClosing`` is the common case: leaving calls ``aclose()``.
"""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ["AsyncClosing", "AsyncScoped", "Scoped"]

_Self = TypeVar("_Self", bound="AsyncScoped")
_SyncSelf = TypeVar("_SyncSelf", bound="Scoped")


class AsyncScoped:
    """A base for objects used as ``async with x:``, which returns ``x`` itself.

    ``__aenter__`` awaits ``_enter`` and ``__aexit__`` awaits ``_exit``, whether the block ended
    normally or by an exception (which then propagates unchanged: ``_exit`` never sees it).
    """

    async def __aenter__(self: _Self) -> _Self:
        """Run ``_enter`` and return the object itself."""
        await self._enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Run ``_exit``."""
        await self._exit()

    async def _enter(self) -> None:
        """Take what the block holds; nothing by default."""

    async def _exit(self) -> None:
        """Give back what the block held; nothing by default."""


class AsyncClosing(AsyncScoped):
    """A base for objects that hold resources until ``aclose``.

    ``async with`` returns the object itself and calls ``aclose`` on the way out, whether
    the block ended normally or by an exception (which then propagates unchanged).
    """

    async def _exit(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release what the object holds. Subclasses override this."""


class Scoped:
    """The blocking twin of ``AsyncScoped``, for objects used as ``with x:``.

    ``__enter__`` runs ``_enter`` and returns the object; ``__exit__`` runs ``_exit`` (the
    block's exception, if any, propagates unchanged).
    """

    def __enter__(self: _SyncSelf) -> _SyncSelf:
        """Run ``_enter`` and return the object itself."""
        self._enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Run ``_exit``."""
        self._exit()

    def _enter(self) -> None:
        """Take what the block holds; nothing by default."""

    def _exit(self) -> None:
        """Give back what the block held; nothing by default."""
