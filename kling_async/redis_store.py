"""Rate limit, task slots and cool-downs shared by every process of one account, on Redis.

Turn it on with one argument::

    from kling_async.redis_store import RedisStore

    async with KlingClient(shared=RedisStore("redis://localhost:6379/0", account="prod")) as client:
        ...

Every process (uvicorn workers, Celery workers, batch hosts) that names the same Redis and the
same *account* then shares:

* **one request rate**: a GCRA token bucket, one Lua script per acquire, on Redis's clock. A
  429/1302 seen by any process starts one cool-down that every process obeys, and halves the one
  shared rate (AIMD); successes raise it again, as [`TokenBucketLimiter`][kling_async.limiter.TokenBucketLimiter]
  does in one process.
* **one pool of task slots**, held as *leases*: a holder renews its leases every ``lease_ttl / 3``
  while it lives, so the slots of a process killed with SIGKILL come back within ``lease_ttl``.
  Waiters queue in one global first-come first-served line (a process re-joins at the back after
  each grant, so none starves); the 1303 shrink/recover rule of
  [`SlotPool`][kling_async.slots.SlotPool] runs on the shared count.

All keys of an account start with ``{prefix}:{{account}}:`` (the braces keep them in one Redis
Cluster slot), so two accounts on one Redis never mix.

**When Redis cannot be reached** (down, restarting, or slower than ``socket_timeout``):

* a slot acquire keeps retrying for ``unavailable_wait`` seconds and then raises
  [`StoreUnavailableError`][kling_async.errors.StoreUnavailableError]: no create is ever sent without a slot;
* the rate limiter falls back to a local token bucket at ``fallback_share`` of the rate, so the
  polling of tasks already created goes on (conservatively) while Redis is away;
* releases that fail are retried by the renewal loop, and renewals re-register every lease this
  process holds, so a Redis that restarted empty learns the running tasks again.

Nothing is lost either way: a task that was created keeps its lease (or, after ``lease_ttl``,
just stops counting) and is still watched.

The store is here; the shared rate limiter, the task slots and their Lua scripts each have a
private module beside this one (``_redis_rate``, ``_redis_slots``, ``_redis_scripts``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import urllib.parse
from typing import Any

import anyio
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ._fields import check_seconds
from ._redis_rate import RedisRateLimiter
from ._redis_slots import RedisTaskSlots
from .clock import Clock, SystemClock
from .errors import ConfigurationError, StoreUnavailableError
from .events import EventSink
from .limiter import RateLimit

__all__ = ["RedisRateLimiter", "RedisStore", "RedisTaskSlots"]

_log = logging.getLogger("kling_async.redis_store")

# What redis-py raises when the server is away, too slow or refusing writes (a replica, out of
# memory); OSError covers sockets that redis-py did not wrap.
_UNAVAILABLE = (redis.exceptions.RedisError, OSError)


def _describe(url: str) -> str:
    """The URL without its password: what messages and reprs may show."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisStore:
    """A [`SharedStore`][kling_async.shared.SharedStore] on Redis (``redis.asyncio`` from redis-py).

    Pass it to the client: ``KlingClient(shared=RedisStore(url, account="prod"))``. The client
    opens it on ``async with`` and closes it on the way out; one store may serve several clients
    of a process (opens are counted).
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        account: str = "default",
        prefix: str = "kling-async",
        lease_ttl: float = 30.0,
        unavailable_wait: float = 30.0,
        fallback_share: float = 0.25,
        poll_interval: float = 0.05,
        socket_timeout: float = 2.0,
        recovery_seconds: float = 30.0,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Describe the store; nothing connects until the first command.

        Args:
            url: a ``redis://`` or ``rediss://`` URL (a password in it is never shown).
            account: names the Kling account: processes with the same account share limits.
            prefix: the first part of every key.
            lease_ttl: seconds after which the slots of a process that stopped renewing them
                (killed, frozen, cut off) return to the pool.
            unavailable_wait: seconds a slot acquire keeps trying an unreachable Redis before it
                raises [`StoreUnavailableError`][kling_async.errors.StoreUnavailableError].
            fallback_share: the share of the rate the limiter uses locally while Redis is away.
            poll_interval: seconds between a waiting process's attempts to take a slot.
            socket_timeout: seconds a Redis command may take before it counts as a failure.
            recovery_seconds: how long no 1303 must be seen before the slot limit grows again.
            name: names this process in its lease ids (what an operator sees in Redis);
                host name and process id when omitted.
            clock: the time source for local sleeps; the system clock when omitted.

        Raises:
            ConfigurationError: a value is out of range.
        """
        # `field`, not `name`: a loop over `name` used to overwrite the process name parameter.
        for field, text in (("url", url), ("account", account), ("prefix", prefix)):
            if not isinstance(text, str):
                raise ConfigurationError(
                    f"RedisStore {field} must be a str, got {type(text).__name__}"
                )
        if name is not None and not isinstance(name, str):
            raise ConfigurationError(
                f"RedisStore name must be a str or None, got {type(name).__name__}"
            )
        for field, seconds in (
            ("lease_ttl", lease_ttl),
            ("poll_interval", poll_interval),
            ("socket_timeout", socket_timeout),
        ):
            check_seconds(field, seconds, zero=False, optional=False)
        for field, seconds in (
            ("unavailable_wait", unavailable_wait),
            ("recovery_seconds", recovery_seconds),
        ):
            check_seconds(field, seconds, zero=True, optional=False)
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"RedisStore needs a redis://, rediss:// or unix:// URL, got {_describe(url)!r}"
            )
        if not account or any(char in account for char in "{}: "):
            raise ConfigurationError(
                f"account must be a non-empty name without braces, colons or spaces: {account!r}"
            )
        if (
            isinstance(fallback_share, bool)
            or not isinstance(fallback_share, int | float)
            or not 0 < fallback_share <= 1
        ):
            raise ConfigurationError(f"fallback_share must be in (0, 1], got {fallback_share!r}")
        self._url = url
        self._where = _describe(url)
        self.account = account
        """The account name in every key."""
        self._keys = f"{prefix}:{{{account}}}:"
        self.lease_ttl = lease_ttl
        """Seconds until the slots of a silent process return."""
        self.unavailable_wait = unavailable_wait
        """Seconds a slot acquire waits for an unreachable Redis."""
        self.fallback_share = fallback_share
        """Share of the rate used locally while Redis is away."""
        self.poll_interval = poll_interval
        """Seconds between a waiting process's attempts to take a slot."""
        self.recovery_seconds = recovery_seconds
        """Quiet seconds before a shrunk slot limit grows again."""
        self.name = name if name is not None else f"{socket.gethostname()}-{os.getpid()}"
        """This process's name in its lease ids."""
        self._socket_timeout = socket_timeout
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._opened = 0
        self._renewer: asyncio.Task[None] | None = None
        self._slots: list[RedisTaskSlots] = []

    def __repr__(self) -> str:
        return (
            f"RedisStore({self._where!r}, account={self.account!r}, lease_ttl={self.lease_ttl}, "
            f"open={self._opened > 0})"
        )

    def key(self, name: str) -> str:
        """The full Redis key of *name* for this account."""
        return self._keys + name

    @property
    def where(self) -> str:
        """The Redis URL without its password."""
        return self._where

    def rate_limiter(
        self, limit: RateLimit, *, clock: Clock | None = None, events: EventSink | None = None
    ) -> RedisRateLimiter:
        """A limiter on this store (see [`RedisRateLimiter`][kling_async.redis_store.RedisRateLimiter])."""
        return RedisRateLimiter(self, limit, clock=clock or self._clock, events=events)

    def task_slots(
        self,
        max_active: int | None,
        *,
        clock: Clock | None = None,
        events: EventSink | None = None,
        scope: str = "",
    ) -> RedisTaskSlots:
        """Task slots on this store (see [`RedisTaskSlots`][kling_async.redis_store.RedisTaskSlots]);
        *scope* names a pool of its own within the account (``""``: the account's one pool)."""
        slots = RedisTaskSlots(
            self, max_active, clock=clock or self._clock, events=events, scope=scope
        )
        self._slots.append(slots)
        return slots

    async def open(self) -> None:
        """Start the lease renewal loop (nested opens are counted)."""
        self._opened += 1
        if self._opened > 1:
            return
        # A task the store owns and cancels in aclose(), rather than a task group: a group must
        # be left by the task that entered it, and a store is often opened in one task (an app's
        # start-up, a fixture) and closed in another. aiohttp ties the client to asyncio anyway.
        self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def aclose(self) -> None:
        """Undo one [`open`][kling_async.redis_store.RedisStore.open]; the last stops renewing, gives leases back, disconnects."""
        if self._opened > 1:
            self._opened -= 1
            return
        self._opened = 0
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            with anyio.CancelScope(shield=True):
                # Cancelled until it ends: a cancellation that lands as one of redis-py's own
                # timeouts expires can be swallowed by that timeout, so one cancel() may not do.
                while not renewer.done():
                    renewer.cancel()
                    await asyncio.wait({renewer}, timeout=0.05)
            if not renewer.cancelled() and renewer.exception() is not None:
                _log.error("lease renewal failed", exc_info=renewer.exception())
        with anyio.CancelScope(shield=True):
            # Leases of tasks still running stay: they expire after lease_ttl, as the tasks
            # (probably) end. Releases that failed earlier get one more try.
            for slots in self._slots:
                await slots.flush_releases()
            connection, self._redis = self._redis, None
            if connection is not None:
                await connection.aclose()

    async def __aenter__(self) -> RedisStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _connection(self) -> aioredis.Redis:
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                self._url,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._socket_timeout,
                # No retries inside redis-py (its default backs off for seconds): our own code
                # decides when to try again, and what to do meanwhile.
                retry=Retry(NoBackoff(), 0),
            )
            self._scripts = {}
        return self._redis

    async def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one Lua *script* (cached by its SHA on the server; reloaded after a restart).

        Raises:
            StoreUnavailableError: Redis could not be reached or did not answer in time.
        """
        connection = self._connection()
        runner = self._scripts.get(script)
        if runner is None:
            runner = self._scripts[script] = connection.register_script(script)
        try:
            return await runner(keys=keys, args=args)
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(
                f"Redis at {self._where} did not answer: {type(exc).__name__}"
            ) from None

    async def _renew_forever(self) -> None:
        while self._renewer is not None:
            await self._clock.sleep(self.lease_ttl / 3)
            for slots in self._slots:
                await slots.renew()
