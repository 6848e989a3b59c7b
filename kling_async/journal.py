"""A durable journal of batch submissions, so a restarted batch re-attaches instead of paying twice.

For each input the batch records its intent (with the ``external_task_id`` it will send) *before*
the create request leaves, then the server's task id right after the answer, then the outcome and
the downloaded file. After a crash, an entry still ``pending`` or ``uncertain`` is looked up by its
``external_task_id`` before anything is submitted again; an entry with a ``task_id`` is simply
polled again.

[`Journal`][kling_async.journal.Journal] is the interface; [`SqliteJournal`][kling_async.journal.SqliteJournal] stores it in one SQLite file and
[`InMemoryJournal`][kling_async.journal.InMemoryJournal] keeps it in memory (tests, short scripts). A Redis or Postgres journal only
needs the seven methods of [`Journal`][kling_async.journal.Journal]. The SQLite file's schema, lock and checks live in the
private ``_sqlite_file`` beside this module.

Examples:
    >>> async def main() -> None:  # doctest: +SKIP
    ...     async with await SqliteJournal.open("batch.journal") as journal:
    ...         entry = await journal.record_intent(
    ...             "line-1", external_task_id="b1-0001", kind="text2video", request_json="{}"
    ...         )
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
import attrs

from . import _sqlite_file as sqlite_file
from ._closing import AsyncClosing
from ._sqlite_file import LOCK_SUFFIX, SCHEMA_VERSION
from .errors import ConfigurationError

__all__ = [
    "JOURNAL_STATUSES",
    "LOCK_SUFFIX",
    "SCHEMA_VERSION",
    "InMemoryJournal",
    "Journal",
    "JournalEntry",
    "SqliteJournal",
]

_T = TypeVar("_T")

JOURNAL_STATUSES: frozenset[str] = frozenset(
    {"pending", "created", "succeed", "failed", "uncertain", "downloaded"}
)
"""Every status a [`JournalEntry`][kling_async.journal.JournalEntry] can have.

``pending``: intent recorded, create not (known to be) answered. ``created``: the server gave a
task id. ``succeed``/``failed``: the task finished. ``uncertain``: the create failed ambiguously,
so a task may exist. ``downloaded``: the result is on disk at ``file_path``.
"""


@attrs.frozen
class JournalEntry:
    """What the journal knows about one input of a batch.

    Attributes:
        key: a stable id of the input (a line number, or a hash of the request).
        external_task_id: the id sent with the create; the way to find the task after a crash.
        kind: the task kind's name (``"text2video"``).
        request_json: the request as JSON, so a batch can be resumed without its input file.
        task_id: the server's task id, once the create was answered.
        status: one of [`JOURNAL_STATUSES`][kling_async.journal.JOURNAL_STATUSES].
        file_path: where the result was downloaded.
        error: why the last step failed, if it did.
        updated_at: when the entry last changed (seconds since the epoch).
    """

    key: str
    external_task_id: str
    kind: str
    request_json: str
    task_id: str | None = None
    status: str = "pending"
    file_path: str | None = None
    error: str | None = None
    updated_at: float = 0.0


class Journal(Protocol):
    """Where a batch records its progress; every write is durable when the call returns."""

    async def record_intent(
        self, key: str, *, external_task_id: str, kind: str, request_json: str
    ) -> JournalEntry:
        """Record that *key* is about to be submitted; call it BEFORE sending the create.

        Idempotent: when *key* is already known, the existing entry is returned unchanged (with
        its original ``external_task_id``), so a resumed batch sends the same id again.
        """
        ...

    async def record_created(self, key: str, task_id: str) -> None:
        """Record the server's task id, right after the create was answered."""
        ...

    async def record_status(self, key: str, status: str, *, error: str | None = None) -> None:
        """Record a new status (one of [`JOURNAL_STATUSES`][kling_async.journal.JOURNAL_STATUSES]) and, optionally, why."""
        ...

    async def record_download(self, key: str, file_path: str) -> None:
        """Record that the result is on disk at *file_path* (status becomes ``downloaded``)."""
        ...

    async def entries(self) -> list[JournalEntry]:
        """Every entry, in the order their intents were recorded."""
        ...

    async def get(self, key: str) -> JournalEntry | None:
        """The entry for *key*, or ``None``."""
        ...

    async def aclose(self) -> None:
        """Release the journal's resources; safe to call twice."""
        ...


def _check_status(status: str) -> None:
    if status not in JOURNAL_STATUSES:
        known = ", ".join(sorted(JOURNAL_STATUSES))
        raise ConfigurationError(f"unknown journal status {status!r}; known: {known}")


def _unknown_key(key: str) -> ConfigurationError:
    return ConfigurationError(f"the journal has no entry {key!r}; call record_intent first")


class InMemoryJournal(AsyncClosing):
    """A [`Journal`][kling_async.journal.Journal] kept in a dict: nothing survives the process.

    Args:
        now: the clock for ``updated_at`` (defaults to ``time.time``).
    """

    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        self._entries: dict[str, JournalEntry] = {}
        self._now = now

    async def record_intent(
        self, key: str, *, external_task_id: str, kind: str, request_json: str
    ) -> JournalEntry:
        """See [`Journal.record_intent`][kling_async.journal.Journal.record_intent]."""
        existing = self._entries.get(key)
        if existing is not None:
            return existing
        entry = JournalEntry(
            key=key,
            external_task_id=external_task_id,
            kind=kind,
            request_json=request_json,
            updated_at=self._now(),
        )
        self._entries[key] = entry
        return entry

    def _update(self, key: str, **changes: Any) -> None:
        entry = self._entries.get(key)
        if entry is None:
            raise _unknown_key(key)
        self._entries[key] = attrs.evolve(entry, updated_at=self._now(), **changes)

    async def record_created(self, key: str, task_id: str) -> None:
        """See [`Journal.record_created`][kling_async.journal.Journal.record_created]."""
        self._update(key, task_id=task_id, status="created", error=None)

    async def record_status(self, key: str, status: str, *, error: str | None = None) -> None:
        """See [`Journal.record_status`][kling_async.journal.Journal.record_status]."""
        _check_status(status)
        self._update(key, status=status, error=error)

    async def record_download(self, key: str, file_path: str) -> None:
        """See [`Journal.record_download`][kling_async.journal.Journal.record_download]."""
        self._update(key, file_path=file_path, status="downloaded", error=None)

    async def entries(self) -> list[JournalEntry]:
        """See [`Journal.entries`][kling_async.journal.Journal.entries]."""
        return list(self._entries.values())

    async def get(self, key: str) -> JournalEntry | None:
        """See [`Journal.get`][kling_async.journal.Journal.get]."""
        return self._entries.get(key)

    async def aclose(self) -> None:
        """Nothing to release."""


def _row_to_entry(row: Sequence[Any]) -> JournalEntry:
    """The entry of a row in the column order both SQL journals select."""
    return JournalEntry(
        key=row[0],
        external_task_id=row[1],
        kind=row[2],
        request_json=row[3],
        task_id=row[4],
        status=row[5],
        file_path=row[6],
        error=row[7],
        updated_at=row[8],
    )


class SqliteJournal(AsyncClosing):
    """A [`Journal`][kling_async.journal.Journal] in one SQLite file (WAL mode, ``synchronous=FULL``).

    Every write is one committed transaction, so a process killed at any instant leaves a
    consistent journal holding every write that returned. All SQLite calls run on a worker thread,
    one at a time (a ``anyio.CapacityLimiter`` of 1), over a single connection; the event loop
    never waits on the disk. Use [`open`][kling_async.journal.SqliteJournal.open] to create one.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        limiter: anyio.CapacityLimiter,
        path: str,
        *,
        now: Callable[[], float] = time.time,
        lock: int | None = None,
    ) -> None:
        """Wrap an open connection; prefer [`open`][kling_async.journal.SqliteJournal.open], which locks, checks and prepares it."""
        self._connection: sqlite3.Connection | None = connection
        self._limiter = limiter
        self._now = now
        self._lock = lock
        self.path = path

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, now: Callable[[], float] = time.time
    ) -> SqliteJournal:
        """Open the journal at *path*, creating the file and its schema when missing.

        The journal is locked for this process until [`aclose`][kling_async.journal.SqliteJournal.aclose] (an ``flock`` on
        ``<path>.lock``), and one write is made at once, so an unwritable location fails here,
        before a batch sends anything.

        Args:
            path: the journal file; its folder must exist.
            now: the clock for ``updated_at`` (defaults to ``time.time``).

        Raises:
            JournalLockedError: another process (or another open journal here) holds the lock.
            StorageError: the file or its lock cannot be created or written (read-only, missing
                folder, disk full, file-size limit), with the path and the reason.
            ConfigurationError: the file is not a kling_async journal (with the path and the
                reason), or has another schema version.
        """
        text = os.fspath(path)
        limiter = anyio.CapacityLimiter(1)
        lock = await anyio.to_thread.run_sync(sqlite_file.lock, text, limiter=limiter)
        try:
            connection = await anyio.to_thread.run_sync(
                functools.partial(sqlite_file.connect, text, now()), limiter=limiter
            )
        except BaseException:
            sqlite_file.unlock(lock)
            raise
        return cls(connection, limiter, text, now=now, lock=lock)

    def __del__(self) -> None:
        # A journal dropped without aclose() must not keep its file locked for the rest of the
        # process: the next open in this process would be refused.
        lock, self._lock = getattr(self, "_lock", None), None
        sqlite_file.unlock(lock)

    async def _run(self, function: Callable[[sqlite3.Connection], _T]) -> _T:
        connection = self._connection
        if connection is None:
            raise ConfigurationError(f"journal {self.path!r} is closed")
        try:
            return await anyio.to_thread.run_sync(function, connection, limiter=self._limiter)
        except sqlite3.OperationalError as exc:
            # A full disk, a file-size limit, an I/O error: the write was rolled back, so the
            # journal holds every write that returned before this one.
            raise sqlite_file.storage_error(self.path, exc) from None

    @staticmethod
    def _write(connection: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
        connection.execute("BEGIN IMMEDIATE")
        try:
            changed = connection.execute(sql, params).rowcount
            connection.execute("COMMIT")
        except BaseException:
            sqlite_file.rollback(connection)
            raise
        return changed

    async def record_intent(
        self, key: str, *, external_task_id: str, kind: str, request_json: str
    ) -> JournalEntry:
        """See [`Journal.record_intent`][kling_async.journal.Journal.record_intent]."""
        now = self._now()

        def insert(connection: sqlite3.Connection) -> JournalEntry:
            connection.execute("BEGIN IMMEDIATE")
            try:
                # OR IGNORE keeps the first intent: its external_task_id is what may already
                # have reached the server.
                connection.execute(
                    sqlite_file.SQL_INTENT, (key, external_task_id, kind, request_json, now)
                )
                row = connection.execute(sqlite_file.SQL_GET, (key,)).fetchone()
                connection.execute("COMMIT")
            except BaseException:
                sqlite_file.rollback(connection)
                raise
            return _row_to_entry(row)

        return await self._run(insert)

    async def _update(self, key: str, sql: str, params: tuple[Any, ...]) -> None:
        changed = await self._run(
            functools.partial(self._write, sql=sql, params=(*params, self._now(), key))
        )
        if changed == 0:
            raise _unknown_key(key)

    async def record_created(self, key: str, task_id: str) -> None:
        """See [`Journal.record_created`][kling_async.journal.Journal.record_created]."""
        await self._update(key, sqlite_file.SQL_CREATED, (task_id,))

    async def record_status(self, key: str, status: str, *, error: str | None = None) -> None:
        """See [`Journal.record_status`][kling_async.journal.Journal.record_status]."""
        _check_status(status)
        await self._update(key, sqlite_file.SQL_STATUS, (status, error))

    async def record_download(self, key: str, file_path: str) -> None:
        """See [`Journal.record_download`][kling_async.journal.Journal.record_download]."""
        await self._update(key, sqlite_file.SQL_DOWNLOAD, (file_path,))

    async def entries(self) -> list[JournalEntry]:
        """See [`Journal.entries`][kling_async.journal.Journal.entries]."""

        def select(connection: sqlite3.Connection) -> list[JournalEntry]:
            rows = connection.execute(sqlite_file.SQL_ALL).fetchall()
            return [_row_to_entry(row) for row in rows]

        return await self._run(select)

    async def get(self, key: str) -> JournalEntry | None:
        """See [`Journal.get`][kling_async.journal.Journal.get]."""

        def select(connection: sqlite3.Connection) -> JournalEntry | None:
            row = connection.execute(sqlite_file.SQL_GET, (key,)).fetchone()
            return None if row is None else _row_to_entry(row)

        return await self._run(select)

    async def journal_mode(self) -> str:
        """The SQLite journal mode in force (``"wal"``); for diagnostics and tests."""

        def query(connection: sqlite3.Connection) -> str:
            row = connection.execute("PRAGMA journal_mode").fetchone()
            return str(row[0]).lower()

        return await self._run(query)

    async def aclose(self) -> None:
        """Close the connection (every write is already committed). Safe to call twice."""
        connection, self._connection = self._connection, None
        lock, self._lock = self._lock, None
        try:
            if connection is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(connection.close, limiter=self._limiter)
        finally:
            sqlite_file.unlock(lock)
