"""A batch journal in PostgreSQL: many workers on many hosts share one batch, safely.

Each input of a batch is one row of ``kling_batch_items``, keyed by ``(batch, key)``. Workers
*claim* rows with ``FOR UPDATE SKIP LOCKED`` and hold a lease on them (``lease_owner``,
``lease_until``, set from the database's clock so the hosts' clocks do not matter) that they
renew while they work. Every write a worker makes is *fenced*: it only lands while the row is
still the worker's (or nobody's), so a worker that stalled past its lease and lost the row to
another cannot overwrite what the new owner recorded.

The create protocol is the one of [`SqliteJournal`][kling_async.journal.SqliteJournal]: the intent, with
its ``external_task_id``, is committed before the create leaves; the task id right after the
answer. When a worker dies its leases run out and another worker adopts its rows: a row with a
task id is polled, one whose create was ambiguous is looked up by ``external_task_id`` first
(that is [`Batch`][kling_async.batch.Batch]'s recovery, unchanged).

The schema is created and migrated forward by the library (``kling_schema_version`` records what
was applied), under an advisory lock so that workers starting together do not race.

Requires the ``postgres`` extra (``pip install 'kling-async[postgres]'``), which brings psycopg 3
and its connection pool.

How the journal reaches the database (URLs, the pool, reconnecting) is in the private
``_pg_connect`` beside this module.

Examples:
    >>> async def main() -> None:  # doctest: +SKIP
    ...     async with await PostgresJournal.open("postgresql://db/kling", batch="b1") as journal:
    ...         await journal.seed([("line-1", "text2video", "{}")])
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs

from . import _pg_schema as schema
from ._closing import AsyncClosing
from ._pg_connect import (
    call_reconnecting,
    first_contact,
    is_postgres_url,
    new_pool,
    open_pool,
    redact_url,
)
from ._pg_schema import MIGRATIONS, PG_SCHEMA_VERSION
from ._urls import same_request_json
from .errors import ConfigurationError, LeaseLostError
from .journal import JournalEntry, _check_status, _row_to_entry

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool

__all__ = [
    "MIGRATIONS",
    "PG_SCHEMA_VERSION",
    "BatchStatus",
    "PostgresJournal",
    "is_postgres_url",
    "redact_url",
]

_T = TypeVar("_T")


def default_owner() -> str:
    """A worker name unique across hosts: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@attrs.frozen
class BatchStatus:
    """A batch's progress as the journal sees it, from any host.

    Attributes:
        batch: the batch's name.
        counts: items per state (``queued`` is an input no worker has started yet).
        leased: items held by a live worker right now.
        workers: distinct live workers.
        per_minute: items finished (downloaded or failed) per minute over the recent window.
        failures: ``(status, reason, count)`` of failed and uncertain items, most common first.
    """

    batch: str
    counts: dict[str, int]
    leased: int
    workers: int
    per_minute: float
    failures: tuple[tuple[str, str, int], ...]

    @property
    def total(self) -> int:
        """Every item of the batch."""
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        """Items downloaded or failed."""
        return sum(self.counts.get(status, 0) for status in schema.FINISHED)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds to finish the rest at the recent rate, or ``None`` without a rate."""
        if self.per_minute <= 0:
            return None
        return (self.total - self.finished) / self.per_minute * 60.0


class PostgresJournal(AsyncClosing):
    """A [`Journal`][kling_async.journal.Journal] for one batch in a PostgreSQL database.

    Alone it behaves like [`SqliteJournal`][kling_async.journal.SqliteJournal]. With
    [`seed`][kling_async.journal_postgres.PostgresJournal.seed], [`claim`][kling_async.journal_postgres.PostgresJournal.claim], [`renew`][kling_async.journal_postgres.PostgresJournal.renew] and [`release`][kling_async.journal_postgres.PostgresJournal.release] many workers share the batch
    (see [`BatchWorker`][kling_async.worker.BatchWorker]). Every call is one transaction; a call that
    loses the server (restart, failover, network) reconnects and tries again until
    *reconnect_timeout* passes, which is safe because every write is idempotent. Use
    [`open`][kling_async.journal_postgres.PostgresJournal.open] to create one.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[TupleRow]],
        *,
        batch: str,
        url: str,
        owner: str,
        reconnect_timeout: float,
        now: Callable[[], float],
        keys: frozenset[str] | None = None,
        owns_pool: bool = True,
    ) -> None:
        """Wrap an open pool; prefer [`open`][kling_async.journal_postgres.PostgresJournal.open], which checks and migrates the schema."""
        self._pool = pool
        self.batch = batch
        self.owner = owner
        self._url = url
        self._reconnect_timeout = reconnect_timeout
        self._now = now
        self._keys = keys
        self._owns_pool = owns_pool
        self._closed = False

    def __repr__(self) -> str:
        """The batch, the worker and the database, never the password."""
        return (
            f"PostgresJournal(batch={self.batch!r}, owner={self.owner!r}, "
            f"url={redact_url(self._url)!r})"
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        batch: str,
        owner: str | None = None,
        max_connections: int = 4,
        connect_timeout: float = 15.0,
        reconnect_timeout: float = 60.0,
        now: Callable[[], float] = time.time,
    ) -> PostgresJournal:
        """Connect to *url*, create or migrate the schema, and return the journal of *batch*.

        Args:
            url: a ``postgresql://`` URL (user, password, host, port, database, options).
            batch: the batch's name; one database holds many batches.
            owner: this worker's name in leases (default: host, pid and a random suffix).
            max_connections: the pool's size.
            connect_timeout: seconds to wait for the first connection (a wrong host fails
                this soon, not after *reconnect_timeout*).
            reconnect_timeout: seconds a call keeps reconnecting before it gives up.
            now: the clock for ``updated_at`` (leases use the database's clock).

        Raises:
            ConfigurationError: not a PostgreSQL URL, an empty batch name, the ``postgres`` extra
                is not installed, or the database has a newer schema than this version reads.
            JournalUnavailableError: the database could not be reached in *reconnect_timeout*.
        """
        if not is_postgres_url(url):
            raise ConfigurationError(
                f"not a PostgreSQL URL: {redact_url(url)!r} (expected postgresql://...)"
            )
        if not batch:
            raise ConfigurationError("the batch name must not be empty")
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be at least 1, got {max_connections}")
        pool = new_pool(url, max_connections=max_connections, reconnect_timeout=reconnect_timeout)
        journal = cls(
            pool,
            batch=batch,
            url=url,
            owner=owner or default_owner(),
            reconnect_timeout=reconnect_timeout,
            now=now,
        )
        try:
            await first_contact(url, connect_timeout)
            await open_pool(pool, url, connect_timeout)
            await journal._call(schema.migrate)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await pool.close()
            raise
        return journal

    def only(self, keys: Iterable[str]) -> PostgresJournal:
        """This journal seen through *keys*: [`entries`][kling_async.journal_postgres.PostgresJournal.entries] lists only them; the pool is shared.

        A worker gives this to [`Batch`][kling_async.batch.Batch] for the rows it claimed, so a
        chunk's bookkeeping does not read the whole batch.
        """
        return self._view(self.batch, frozenset(keys))

    def for_batch(self, batch: str) -> PostgresJournal:
        """The journal of another batch in the same database, sharing this one's connections."""
        if not batch:
            raise ConfigurationError("the batch name must not be empty")
        return self._view(batch, None)

    def _view(self, batch: str, keys: frozenset[str] | None) -> PostgresJournal:
        return PostgresJournal(
            self._pool,
            batch=batch,
            url=self._url,
            owner=self.owner,
            reconnect_timeout=self._reconnect_timeout,
            now=self._now,
            keys=keys,
            owns_pool=False,
        )

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(self, operation: Callable[[AsyncConnection[TupleRow]], Awaitable[_T]]) -> _T:
        """Run *operation* in one transaction, reconnecting through server restarts."""
        if self._closed:
            raise ConfigurationError(f"journal {self!r} is closed")
        return await call_reconnecting(self._pool, self._url, self._reconnect_timeout, operation)

    async def _fetch(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        async def run(conn: AsyncConnection[TupleRow]) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall() if cursor.description is not None else []

        return await self._call(run)

    async def _update(self, key: str, sql: str, **params: Any) -> None:
        values = {"batch": self.batch, "key": key, "owner": self.owner, "now": self._now()}

        async def run(conn: AsyncConnection[TupleRow]) -> int:
            cursor = await conn.execute(sql, {**values, **params})
            if cursor.rowcount:
                return cursor.rowcount
            cursor = await conn.execute(schema.SQL_EXISTS, (self.batch, key))
            row = await cursor.fetchone()
            if row is None:
                raise ConfigurationError(
                    f"the journal has no entry {key!r}; call record_intent first"
                )
            raise LeaseLostError(key, row[0])

        # Shielded: a write that left must be known to have landed before the caller moves on.
        with anyio.CancelScope(shield=True):
            await self._call(run)

    # -- the Journal protocol ------------------------------------------------------------------

    async def record_intent(
        self, key: str, *, external_task_id: str, kind: str, request_json: str
    ) -> JournalEntry:
        """See ``Journal.record_intent``; fenced by the lease (see the module docstring)."""
        params = {
            "batch": self.batch,
            "key": key,
            "ext": external_task_id,
            "kind": kind,
            "request_json": request_json,
            "owner": self.owner,
            "now": self._now(),
        }

        async def run(conn: AsyncConnection[TupleRow]) -> JournalEntry:
            cursor = await conn.execute(schema.SQL_INTENT, params)
            row = await cursor.fetchone()
            if row is None:
                owner = await (await conn.execute(schema.SQL_EXISTS, (self.batch, key))).fetchone()
                raise LeaseLostError(key, owner[0] if owner else None)
            return _row_to_entry(row)

        with anyio.CancelScope(shield=True):
            entry = await self._call(run)
        return entry  # noqa: RET504 - after the scope: mypy knows a scope may swallow errors

    async def record_created(self, key: str, task_id: str) -> None:
        """See ``Journal.record_created``."""
        await self._update(key, schema.SQL_CREATED, task_id=task_id)

    async def record_status(self, key: str, status: str, *, error: str | None = None) -> None:
        """See ``Journal.record_status``."""
        _check_status(status)
        await self._update(key, schema.SQL_STATUS, status=status, error=error)

    async def record_download(self, key: str, file_path: str) -> None:
        """See ``Journal.record_download``."""
        await self._update(key, schema.SQL_DOWNLOAD, path=file_path)

    async def entries(self) -> list[JournalEntry]:
        """Every entry with a recorded intent (of this view's keys, see [`only`][kling_async.journal_postgres.PostgresJournal.only])."""
        if self._keys is None:
            rows = await self._fetch(schema.SQL_ENTRIES, (self.batch,))
        else:
            rows = await self._fetch(schema.SQL_ENTRIES_OF, (self.batch, sorted(self._keys)))
        return [_row_to_entry(row) for row in rows]

    async def get(self, key: str) -> JournalEntry | None:
        """See ``Journal.get``; a seeded input not started yet is ``None``."""
        rows = await self._fetch(schema.SQL_GET, (self.batch, key))
        return _row_to_entry(rows[0]) if rows else None

    async def aclose(self) -> None:
        """Close the pool (every write is already committed). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_pool:
            with anyio.CancelScope(shield=True):
                await self._pool.close()

    # -- many workers --------------------------------------------------------------------------

    async def seed(self, items: Sequence[tuple[str, str, str]]) -> None:
        """Add ``(key, kind, request_json)`` inputs not yet in the batch, as ``queued``.

        Every worker of a batch seeds the same inputs; the first one adds them, the others
        change nothing.

        Raises:
            ConfigurationError: a key already in the batch with a different request (the input
                changed: use another batch name). Nothing is added then.
        """
        import json

        wanted = {key: request_json for key, _, request_json in items}
        now = self._now()

        async def run(conn: AsyncConnection[TupleRow]) -> list[str]:
            async with conn.transaction():
                cursor = await conn.execute(
                    schema.SQL_CHANGED, (self.batch, list(wanted), json.dumps(wanted))
                )
                changed = [
                    str(key)
                    for key, stored in await cursor.fetchall()
                    # A batch seeded before callback tokens were hidden still matches.
                    if not same_request_json(str(stored), wanted[str(key)])
                ]
                if changed:
                    return changed
                async with conn.cursor() as many:
                    await many.executemany(
                        schema.SQL_SEED,
                        [(self.batch, key, kind, rj, now) for key, kind, rj in items],
                    )
            return []

        changed = await self._call(run)
        if changed:
            shown = ", ".join(repr(key) for key in changed[:5])
            raise ConfigurationError(
                f"batch {self.batch!r} already has {shown} with a different request; the input "
                "changed: use a new batch name for new inputs"
            )

    async def claim(
        self, limit: int, *, lease: float, max_claims: int, downloads: bool = True
    ) -> list[str]:
        """Lease up to *limit* open items no live worker holds, oldest first; return their keys.

        An item is open until it is downloaded (or, when *downloads* is false, succeeded) or
        failed after its task ran; each claim counts, and an item claimed *max_claims* times is
        left alone (reported by [`status`][kling_async.journal_postgres.PostgresJournal.status]).
        """
        params = {
            "batch": self.batch,
            "owner": self.owner,
            "ttl": lease,
            "limit": limit,
            "max_claims": max_claims,
            "downloads": downloads,
        }
        # Shielded: a claim that committed must reach the caller, who releases it; cancelled
        # half-way, its leases would block the items until they expire.
        with anyio.CancelScope(shield=True):
            rows = await self._fetch(schema.SQL_CLAIM, params)
        return [str(key) for key, _ in sorted(rows, key=lambda row: row[1])]

    async def renew(self, keys: Iterable[str], *, lease: float) -> set[str]:
        """Extend this worker's lease on *keys*; return the keys it still holds."""
        rows = await self._fetch(
            schema.SQL_RENEW,
            {"batch": self.batch, "owner": self.owner, "ttl": lease, "keys": sorted(keys)},
        )
        return {str(row[0]) for row in rows}

    async def release(self, keys: Iterable[str]) -> None:
        """Give up this worker's leases on *keys* (open ones may then be claimed again)."""
        with anyio.CancelScope(shield=True):
            await self._fetch(
                schema.SQL_RELEASE, {"batch": self.batch, "owner": self.owner, "keys": sorted(keys)}
            )

    async def open_items(self, *, max_claims: int, downloads: bool = True) -> int:
        """Items not finished that a worker may still claim (now, or when a lease runs out)."""
        rows = await self._fetch(
            schema.SQL_OPEN, {"batch": self.batch, "max_claims": max_claims, "downloads": downloads}
        )
        return int(rows[0][0])

    async def batches(self) -> list[str]:
        """The names of every batch in this database."""
        return [str(row[0]) for row in await self._fetch(schema.SQL_BATCHES, ())]

    async def status(self, *, window: float = 300.0, failures: int = 5) -> BatchStatus:
        """The batch's progress: counts by state, live workers, recent rate, top failures.

        Args:
            window: seconds of recent finishes the rate is measured over.
            failures: how many distinct failure reasons to report.
        """
        now = self._now()
        counts = {
            str(status): int(count)
            for status, count in await self._fetch(schema.SQL_COUNTS, (self.batch,))
        }
        leased, workers, first, last, recent = (
            await self._fetch(schema.SQL_PROGRESS, (now - window, self.batch))
        )[0]
        per_minute = 0.0
        if recent and first is not None and last is not None:
            # A batch younger than the window is measured over its own life so far.
            span = max(min(window, now - float(first)), 1.0)
            per_minute = int(recent) / span * 60.0
        reasons = await self._fetch(schema.SQL_FAILURES, (self.batch, failures))
        return BatchStatus(
            batch=self.batch,
            counts=counts,
            leased=int(leased),
            workers=int(workers),
            per_minute=per_minute,
            failures=tuple((str(s), str(r), int(c)) for s, r, c in reasons),
        )
