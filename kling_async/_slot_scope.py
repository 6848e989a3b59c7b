"""Which task slots a create holds: the pool of its resource pack and model, and how many.

Kling counts concurrent tasks per account and resource pack (video, image, try-on), and its newer
text per model version too; an image request for ``n`` images counts ``n`` times. A create
therefore holds ``n`` slots (``slot_weight``) of one pool (``slot_scope``): the account's one pool
by default, or, with ``KlingClient(slots_per_model=True)``, one pool per resource pack and model,
each with ``max_active_tasks`` slots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio

from .models import TaskKind
from .slots import SlotLease, TaskSlots

__all__ = ["SlotHold", "SlotPools", "slot_scope", "slot_weight"]

_PACKS = {"videos": "video", "images": "image", "audios": "audio"}


def slot_scope(kind: TaskKind, body: Mapping[str, Any], *, per_model: bool) -> str:
    """The pool a create of *kind* with *body* counts against (``""``: the account's one pool).

    Examples:
        >>> from kling_async.kinds import TEXT_TO_VIDEO
        >>> slot_scope(TEXT_TO_VIDEO, {"model_name": "kling-v3"}, per_model=True)
        'video:kling-v3'
        >>> slot_scope(TEXT_TO_VIDEO, {"model_name": "kling-v3"}, per_model=False)
        ''
    """
    if not per_model:
        return ""
    pack = "try-on" if kind.name == "virtual-try-on" else _PACKS.get(kind.results, kind.results)
    model = body.get("model_name") or body.get("model") or ""
    return f"{pack}:{model}"


def slot_weight(body: Mapping[str, Any]) -> int:
    """How many slots a create holds: its ``n`` (images asked for), else one."""
    count = body.get("n")
    if isinstance(count, int) and not isinstance(count, bool) and count > 1:
        return count
    return 1


class SlotHold:
    """The slots one task holds: *weight* leases of one pool. Strictly private."""

    __slots__ = ("leases", "pool")

    def __init__(self, pool: TaskSlots, leases: list[SlotLease]) -> None:
        self.pool = pool
        self.leases = leases

    async def bind(self, task_id: str) -> None:
        """Note the task that holds these slots (so another process may free them)."""
        for lease in self.leases:
            await self.pool.bind(lease, task_id)

    async def release(self) -> None:
        """Give every slot back (twice: nothing), shielded from cancellation."""
        with anyio.CancelScope(shield=True):
            for lease in self.leases:
                await self.pool.release(lease)


class SlotPools:
    """The client's task slot pools by scope: the default one, and one per scope when asked.

    Args:
        default: the pool of scope ``""`` (``KlingClient.slots``).
        make: makes the pool of another scope (given the scope); ``None`` puts every scope in
            *default*.
    """

    def __init__(self, default: TaskSlots, make: Callable[[str], TaskSlots] | None) -> None:
        self.default = default
        self._make = make
        self._pools: dict[str, TaskSlots] = {}

    def pool(self, scope: str) -> TaskSlots:
        """The pool of *scope* (made on first use)."""
        if not scope or self._make is None:
            return self.default
        pool = self._pools.get(scope)
        if pool is None:
            pool = self._pools[scope] = self._make(scope)
        return pool

    @property
    def scopes(self) -> Mapping[str, TaskSlots]:
        """The per-scope pools made so far (not the default one)."""
        return self._pools
