"""One way to be an async context manager: ``async with x:`` returns ``x`` and ends in ``aclose()``."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ["AsyncClosing"]

_Self = TypeVar("_Self", bound="AsyncClosing")


class AsyncClosing:
    """A base for objects that hold resources until :meth:`aclose`.

    ``async with`` returns the object itself and calls :meth:`aclose` on the way out, whether
    the block ended normally or by an exception (which then propagates unchanged).
    """

    async def __aenter__(self: _Self) -> _Self:
        """Return the object itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the object (see :meth:`aclose`)."""
        await self.aclose()

    async def aclose(self) -> None:
        """Release what the object holds. Subclasses override this."""
