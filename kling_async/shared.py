"""What a store shared by several processes provides: one rate limiter and one pool of task slots.

Kling counts requests and unfinished tasks per account, not per process. A client made with
``KlingClient(shared=store)`` takes its [`RateLimiter`][kling_async.limiter.RateLimiter] and its
[`TaskSlots`][kling_async.slots.TaskSlots] from *store*, so every process that uses the same store
(and the same account name in it) obeys one limit. The client opens the store when it is
entered (``async with``) and closes it with :meth:`KlingClient.aclose
<kling_async.KlingClient.aclose>`.

[`RedisStore`][kling_async.redis_store.RedisStore] is the implementation that ships with the
library (the ``kling-async[redis]`` extra).
"""

from __future__ import annotations

from typing import Protocol

from .clock import Clock
from .events import EventSink
from .limiter import RateLimit, RateLimiter
from .slots import TaskSlots

__all__ = ["SharedStore"]


class SharedStore(Protocol):
    """A store whose limiter and task slots are shared with other processes."""

    def rate_limiter(
        self, limit: RateLimit, *, clock: Clock, events: EventSink | None
    ) -> RateLimiter:
        """The shared request-rate limiter for *limit*.

        Args:
            limit: the account's rate and burst (every process should pass the same).
            clock: the client's clock, for local sleeps.
            events: receives [`RateLimited`][kling_async.events.RateLimited] for cool-downs that this
                process started.
        """
        ...

    def task_slots(
        self, max_active: int | None, *, clock: Clock, events: EventSink | None, scope: str = ""
    ) -> TaskSlots:
        """The shared task slots for *max_active* tasks at once (``None``: no limit of ours).

        Args:
            max_active: the account's task limit (every process should pass the same).
            clock: the client's clock, for local sleeps.
            events: receives [`ConcurrencyLimited`][kling_async.events.ConcurrencyLimited] for 1303 answers
                that this process saw.
            scope: a pool of its own within the account (``KlingClient(slots_per_model=True)``
                asks for one per resource pack and model); ``""`` is the account's one pool.
        """
        ...

    async def open(self) -> None:
        """Start what the store runs in the background (lease renewal); nested calls count."""
        ...

    async def aclose(self) -> None:
        """Undo one [`open`][kling_async.shared.SharedStore.open]; the last one stops the background work and disconnects."""
        ...
