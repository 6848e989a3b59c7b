"""The task slots shared by every process of one account, as leases on Redis (see ``redis_store``)."""

from __future__ import annotations

import logging
import uuid
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import anyio

from . import _redis_scripts as scripts
from .clock import Clock
from .errors import ConfigurationError, StoreUnavailableError
from .events import ConcurrencyLimited, EventSink, emit
from .slots import SlotLease, hold_slot

if TYPE_CHECKING:
    from .redis_store import RedisStore

__all__ = ["RedisTaskSlots"]

# One logger for the whole store: operators filter on the public module's name.
_log = logging.getLogger("kling_async.redis_store")

# Finished tasks remembered per process, so that each is reported to Redis once.
_REPORTED_MAX = 10_000


class RedisTaskSlots:
    """A [`TaskSlots`][kling_async.slots.TaskSlots] shared through Redis, as leases (see the module).

    Made by [`RedisStore.task_slots`][kling_async.redis_store.RedisStore.task_slots]; ``KlingClient(shared=...)`` makes one.
    """

    def __init__(
        self,
        store: RedisStore,
        max_active: int | None,
        *,
        clock: Clock,
        events: EventSink | None = None,
        scope: str = "",
    ) -> None:
        """Create task slots on *store*.

        Args:
            store: the Redis store.
            max_active: the account's task limit (>= 1), or ``None`` for none of ours.
            clock: for local sleeps.
            events: receives [`ConcurrencyLimited`][kling_async.events.ConcurrencyLimited] per 1303.
            scope: a pool of its own within the account (``"video:kling-v3"``); ``""`` is the
                account's one pool.

        Raises:
            ConfigurationError: *max_active* is out of range.
        """
        if max_active is not None and (
            isinstance(max_active, bool) or not isinstance(max_active, int) or max_active < 1
        ):
            raise ConfigurationError(
                f"max_active must be an integer >= 1 or None, got {max_active!r}"
            )
        self._store = store
        self._max_active = max_active
        self._clock = clock
        self._events = events
        base = f"slots:{scope}:" if scope else "slots:"
        self._keys = [
            store.key(f"{base}{name}")
            for name in (
                "leases",
                "queue",
                "waiters",
                "state",
                "ticket",
                "released",
                "tasks",
                "lease-tasks",
            )
        ]
        # One place in the global queue per process: local waiters line up behind a lock and
        # the one at its head asks Redis, so a cancelled waiter does not cost the place.
        self._waiter_id = uuid.uuid4().hex
        self._line = anyio.Lock()
        self._waiting = 0
        self._held: dict[str, SlotLease] = {}
        # Finished tasks already reported to Redis, oldest first (a bounded set).
        self._reported: dict[str, None] = {}
        self._unreleased: dict[str, SlotLease] = {}
        self._limit = max_active
        # Since when Redis has not answered, across calls: a caller that gives up and asks
        # again (the client does, to refresh tasks while it waits) must not restart the count.
        self._failing_since: float | None = None
        self.account_in_use = 0
        """Leases held on the whole account, as last seen."""

    def __repr__(self) -> str:
        return (
            f"RedisTaskSlots({self._store.where!r}, account={self._store.account!r}, "
            f"in_use={len(self._held)}, account_in_use={self.account_in_use}, "
            f"limit={self._limit}, waiting={self._waiting})"
        )

    @property
    def in_use(self) -> int:
        """Slots this process holds."""
        return len(self._held)

    @property
    def limit(self) -> int | None:
        """The account's usable limit, as last seen (``None``: no limit)."""
        return self._limit

    @property
    def waiting(self) -> int:
        """Callers of this process waiting in [`acquire`][kling_async.redis_store.RedisTaskSlots.acquire]."""
        return self._waiting

    @property
    def _max(self) -> int:
        return self._max_active or 0

    def _seen_limit(self, limit: int) -> None:
        self._limit = None if limit < 0 else limit

    async def acquire(self) -> SlotLease:
        """Wait for a slot of the account, in the one global line; returns its lease.

        Raises:
            StoreUnavailableError: Redis did not answer for ``unavailable_wait`` seconds; no
                slot is held.
        """
        lease = SlotLease(f"{self._store.name}:{uuid.uuid4().hex}")
        self._waiting += 1
        try:
            async with self._line:
                await self._take(lease, wait=True)
        finally:
            self._waiting -= 1
        return lease

    async def adopt(self) -> SlotLease:
        """Count a task that is already running without waiting (it may exceed the limit).

        Raises:
            StoreUnavailableError: Redis did not answer for ``unavailable_wait`` seconds.
        """
        lease = SlotLease(f"{self._store.name}:{uuid.uuid4().hex}")
        await self._take(lease, wait=False)
        return lease

    def hold(self) -> AbstractAsyncContextManager[SlotLease]:
        """Hold a slot for a block: released at its end unless [`SlotLease.keep`][kling_async.slots.SlotLease.keep] was called."""
        return hold_slot(self)

    async def _take(self, lease: SlotLease, *, wait: bool) -> None:
        ttl = self._store.lease_ttl * 1000
        # A waiter's place lapses if its process stops asking for a few polls.
        waiter_ttl = max(1000.0, self._store.poll_interval * 1000 * 20)
        while True:
            try:
                # Shielded (the socket timeout bounds it): a slot that Redis granted is always
                # recorded, never lost to a cancellation between grant and answer.
                with anyio.CancelScope(shield=True):
                    if wait:
                        granted, used, limit = await self._store.run(
                            scripts.SLOT_ACQUIRE,
                            self._keys,
                            [lease.id, self._waiter_id, ttl, waiter_ttl, self._max],
                        )
                    else:
                        await self._store.run(
                            scripts.SLOT_RENEW, [self._keys[0], self._keys[5]], [ttl, lease.id]
                        )
                        granted, used, limit = 1, self.account_in_use + 1, self._max or -1
            except StoreUnavailableError as exc:
                now = self._clock.now()
                if self._failing_since is None:
                    self._failing_since = now
                    _log.warning("%s; task slots wait for it", exc)
                if now - self._failing_since >= self._store.unavailable_wait:
                    raise StoreUnavailableError(
                        f"no task slot: {exc} for {self._store.unavailable_wait:g} s"
                    ) from None
                await self._clock.sleep(min(1.0, self._store.unavailable_wait))
                continue
            self._failing_since = None
            self.account_in_use = int(used)
            self._seen_limit(int(limit))
            if int(granted):
                self._held[lease.id] = lease
                return
            await self._clock.sleep(self._store.poll_interval)

    async def release(self, lease: SlotLease) -> None:
        """Give a slot back to the account; a second release does nothing.

        Any process may release a lease (by the same id): the holder stops renewing it at its
        next renewal.

        If Redis is away the release is retried by the renewal loop (and the lease expires
        after ``lease_ttl`` in any case).
        """
        if lease.released:
            return
        lease.released = True
        self._held.pop(lease.id, None)
        self._unreleased[lease.id] = lease
        await self._send_release(lease)

    async def _send_release(self, lease: SlotLease) -> None:
        try:
            _removed, limit = await self._store.run(
                scripts.SLOT_RELEASE,
                [self._keys[0], self._keys[3], self._keys[5], self._keys[6], self._keys[7]],
                [
                    lease.id,
                    self._max,
                    self._store.recovery_seconds * 1000,
                    self._store.lease_ttl * 1000,
                ],
            )
        except StoreUnavailableError as exc:
            _log.info("%s; the release of one slot will be retried", exc)
            return
        self._unreleased.pop(lease.id, None)
        self._seen_limit(int(limit))

    async def bind(self, lease: SlotLease, task_id: str) -> None:
        """Bind *lease* to its task, so that any process that sees the task finish frees it.

        If Redis is away the binding is skipped (logged): the lease is then freed by this
        process when it sees the task finish, or expires if the process dies.
        """
        try:
            await self._store.run(scripts.SLOT_BIND, self._keys[6:8], [task_id, lease.id])
        except StoreUnavailableError as exc:
            _log.info("%s; task %s is not bound to its slot", exc, task_id)

    async def release_task(self, task_id: str) -> None:
        """Release the lease bound to *task_id* by whichever process holds it.

        Each task is reported once per process; the holder stops renewing the lease at its
        next renewal.
        """
        if task_id in self._reported:
            return
        self._reported[task_id] = None
        if len(self._reported) > _REPORTED_MAX:
            del self._reported[next(iter(self._reported))]
        try:
            removed = await self._store.run(
                scripts.SLOT_RELEASE_TASK,
                [self._keys[0], self._keys[5], self._keys[6], self._keys[7]],
                [self._store.lease_ttl * 1000, task_id],
            )
        except StoreUnavailableError as exc:
            _log.info("%s; the slot of task %s is left to its holder", exc, task_id)
            return
        if int(removed):
            _log.debug("freed the slot of task %s held by another process", task_id)

    async def on_concurrency_limited(self, held: int = 1) -> None:
        """Shrink the account's usable limit to the leases held, less the caller's own *held*."""
        try:
            limit = int(
                await self._store.run(scripts.SLOT_LIMITED, self._keys[:4], [self._max, held])
            )
        except StoreUnavailableError as exc:
            _log.warning("%s; the 1303 could not be shared", exc)
            return
        if self._limit is None or limit < self._limit:
            _log.warning("too many tasks running on the account: using at most %d slots", limit)
        self._limit = limit
        emit(self._events, ConcurrencyLimited(limit=limit))

    async def renew(self) -> None:
        """Extend every lease this process holds; retry releases that failed."""
        await self.flush_releases()
        if not self._held:
            return
        try:
            gone = await self._store.run(
                scripts.SLOT_RENEW,
                [self._keys[0], self._keys[5]],
                [self._store.lease_ttl * 1000, *self._held],
            )
        except StoreUnavailableError as exc:
            _log.warning("%s; %d lease(s) not renewed", exc, len(self._held))
            return
        for lease_id in gone:
            # Released by another process that saw its task finish.
            lease = self._held.pop(lease_id.decode(), None)
            if lease is not None:
                lease.released = True

    async def flush_releases(self) -> None:
        """Try once more to send the releases that failed while Redis was away."""
        for lease in list(self._unreleased.values()):
            await self._send_release(lease)
