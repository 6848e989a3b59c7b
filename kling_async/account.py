"""What the account has left: Kling's resource packs (``GET /account/costs``, Kling direct only).

Kling lists the resource packs of the account with their total and remaining quantity; the
answer's field names come from Kling's account page and are read defensively (a missing field
is ``None``, not an error). CometAPI bills through its own balance and documents no such
endpoint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

__all__ = ["AccountCosts", "ResourcePack"]


@attrs.frozen
class ResourcePack:
    """One resource pack of the account.

    Attributes:
        name: the pack's name (``"Video Generation - 1000 units"``).
        id: its id.
        type: ``"decreasing_total"`` (a quantity that runs down) or ``"constant_period"``.
        total: the quantity bought.
        remaining: what is left.
        status: ``"online"``, ``"expired"``, ``"runOut"`` or ``"toBeOnline"``.
        purchased_at: when it was bought.
        effective_at: when it starts to count.
        expires_at: when it stops counting.
    """

    name: str | None = None
    id: str | None = None
    type: str | None = None
    total: float | None = None
    remaining: float | None = None
    status: str | None = None
    purchased_at: datetime | None = None
    effective_at: datetime | None = None
    expires_at: datetime | None = None


@attrs.frozen
class AccountCosts:
    """The answer of ``GET /account/costs``.

    Attributes:
        packs: the resource packs, as Kling lists them.
        raw: the answer's ``data``, for fields this library does not read.

    Example::

        costs = await client.account_costs()
        for pack in costs.packs:
            print(pack.name, pack.remaining, "of", pack.total)
    """

    packs: tuple[ResourcePack, ...]
    raw: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def remaining(self) -> float:
        """The remaining quantity of the packs that are online, summed."""
        return sum(pack.remaining or 0.0 for pack in self.packs if pack.status in (None, "online"))
