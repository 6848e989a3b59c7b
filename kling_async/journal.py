"""A durable journal of batch submissions, so a restarted batch re-attaches instead of paying twice.

For each input the batch records its intent (with the ``external_task_id`` it will send) *before*
the create request leaves, then the server's task id right after the answer, then the outcome and
the downloaded file. After a crash, an entry still ``pending`` or ``uncertain`` is looked up by its
``external_task_id`` before anything is submitted again; an entry with a ``task_id`` is simply
polled again.

:class:`Journal` is the interface; :class:`SqliteJournal` stores it in one SQLite file and
:class:`InMemoryJournal` keeps it in memory (tests, short scripts). A Redis or Postgres journal only
needs the seven methods of :class:`Journal`.

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
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
import attrs

from ._closing import AsyncClosing
from .errors import ConfigurationError

__all__ = [
    "JOURNAL_STATUSES",
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
"""Every status a :class:`JournalEntry` can have.

``pending``: intent recorded, create not (known to be) answered. ``created``: the server gave a
task id. ``succeed``/``failed``: the task finished. ``uncertain``: the create failed ambiguously,
so a task may exist. ``downloaded``: the result is on disk at ``file_path``.
"""

SCHEMA_VERSION = 1
"""The version of the SQLite schema this module writes."""


@attrs.frozen
class JournalEntry:
    """What the journal knows about one input of a batch.

    Attributes:
        key: a stable id of the input (a line number, or a hash of the request).
        external_task_id: the id sent with the create; the way to find the task after a crash.
        kind: the task kind's name (``"text2video"``).
        request_json: the request as JSON, so a batch can be resumed without its input file.
        task_id: the server's task id, once the create was answered.
        status: one of :data:`JOURNAL_STATUSES`.
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
        """Record a new status (one of :data:`JOURNAL_STATUSES`) and, optionally, why."""
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
    """A :class:`Journal` kept in a dict: nothing survives the process.

    Args:
        now: the clock for ``updated_at`` (defaults to :func:`time.time`).
    """

    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        self._entries: dict[str, JournalEntry] = {}
        self._now = now

    async def record_intent(
        self, key: str, *, external_task_id: str, kind: str, request_json: str
    ) -> JournalEntry:
        """See :meth:`Journal.record_intent`."""
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
        """See :meth:`Journal.record_created`."""
        self._update(key, task_id=task_id, status="created", error=None)

    async def record_status(self, key: str, status: str, *, error: str | None = None) -> None:
        """See :meth:`Journal.record_status`."""
        _check_status(status)
        self._update(key, status=status, error=error)

    async def record_download(self, key: str, file_path: str) -> None:
        """See :meth:`Journal.record_download`."""
        self._update(key, file_path=file_path, status="downloaded", error=None)

    async def entries(self) -> list[JournalEntry]:
        """See :meth:`Journal.entries`."""
        return list(self._entries.values())

    async def get(self, key: str) -> JournalEntry | None:
        """See :meth:`Journal.get`."""
        return self._entries.get(key)

    async def aclose(self) -> None:
        """Nothing to release."""


_META_TABLE = "kling_journal_schema"
_ENTRY_TABLE = "kling_journal_entries"
# Plain literals, not string building: every value travels as a "?" parameter.
_SCHEMA = (
    "CREATE TABLE kling_journal_schema (version INTEGER NOT NULL, created_at REAL NOT NULL)",
    """CREATE TABLE kling_journal_entries (
        key TEXT PRIMARY KEY,
        external_task_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        request_json TEXT NOT NULL,
        task_id TEXT,
        status TEXT NOT NULL CHECK (status IN (
            'pending', 'created', 'succeed', 'failed', 'uncertain', 'downloaded'
        )),
        file_path TEXT,
        error TEXT,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX kling_journal_entries_external ON kling_journal_entries (external_task_id)",
)
_SQL_VERSION_INSERT = "INSERT INTO kling_journal_schema (version, created_at) VALUES (?, ?)"
_SQL_VERSION = "SELECT MAX(version) FROM kling_journal_schema"
_SQL_INTENT = (
    "INSERT OR IGNORE INTO kling_journal_entries (key, external_task_id, kind, request_json, "
    "task_id, status, file_path, error, updated_at) "
    "VALUES (?, ?, ?, ?, NULL, 'pending', NULL, NULL, ?)"
)
_SQL_SELECT = (
    "SELECT key, external_task_id, kind, request_json, task_id, status, file_path, error, "
    "updated_at FROM kling_journal_entries"
)
_SQL_GET = _SQL_SELECT + " WHERE key = ?"
_SQL_ALL = _SQL_SELECT + " ORDER BY rowid"
_SQL_CREATED = (
    "UPDATE kling_journal_entries SET task_id = ?, status = 'created', error = NULL, "
    "updated_at = ? WHERE key = ?"
)
_SQL_STATUS = "UPDATE kling_journal_entries SET status = ?, error = ?, updated_at = ? WHERE key = ?"
_SQL_DOWNLOAD = (
    "UPDATE kling_journal_entries SET file_path = ?, status = 'downloaded', error = NULL, "
    "updated_at = ? WHERE key = ?"
)


def _row_to_entry(row: tuple[Any, ...]) -> JournalEntry:
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


def _connect(path: str, now: float) -> sqlite3.Connection:
    """Open (creating if needed) and check the journal file; blocking, run in the worker thread."""
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each write is exactly one
        # transaction. check_same_thread=False: anyio's worker threads are not always the same
        # thread, but the CapacityLimiter(1) guarantees one user at a time.
        connection = sqlite3.connect(
            path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise ConfigurationError(f"cannot open journal {path!r}: {exc}") from exc
    try:
        _prepare(connection, path, now)
    except BaseException:
        connection.close()
        raise
    return connection


def _prepare(connection: sqlite3.Connection, path: str, now: float) -> None:
    try:
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(
            f"{path!r} is not a kling_async journal: not an SQLite database ({exc})"
        ) from exc
    if not tables:
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute(_SQL_VERSION_INSERT, (SCHEMA_VERSION, now))
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    elif _META_TABLE not in tables or _ENTRY_TABLE not in tables:
        raise ConfigurationError(
            f"{path!r} is not a kling_async journal: an SQLite database without the journal "
            f"tables (found {', '.join(sorted(tables))})"
        )
    else:
        row = connection.execute(_SQL_VERSION).fetchone()
        version = row[0] if row else None
        if version != SCHEMA_VERSION:
            raise ConfigurationError(
                f"journal {path!r} has schema version {version}; this kling_async reads version "
                f"{SCHEMA_VERSION}"
            )
    # WAL: a crash mid-write leaves the last committed state readable, and readers do not block
    # the writer. synchronous=FULL: every COMMIT is fsynced before it returns, so an entry the
    # batch saw recorded survives kill -9 or power loss; that durability is the journal's purpose.
    mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()
    if mode is None or str(mode[0]).lower() != "wal":
        raise ConfigurationError(
            f"journal {path!r}: WAL mode is unavailable (got {mode[0] if mode else None!r}); "
            "use a file on a local file system"
        )
    connection.execute("PRAGMA synchronous=FULL")


class SqliteJournal(AsyncClosing):
    """A :class:`Journal` in one SQLite file (WAL mode, ``synchronous=FULL``).

    Every write is one committed transaction, so a process killed at any instant leaves a
    consistent journal holding every write that returned. All SQLite calls run on a worker thread,
    one at a time (a :class:`anyio.CapacityLimiter` of 1), over a single connection; the event loop
    never waits on the disk. Use :meth:`open` to create one.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        limiter: anyio.CapacityLimiter,
        path: str,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        """Wrap an open connection; prefer :meth:`open`, which checks and prepares the file."""
        self._connection: sqlite3.Connection | None = connection
        self._limiter = limiter
        self._now = now
        self.path = path

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, now: Callable[[], float] = time.time
    ) -> SqliteJournal:
        """Open the journal at *path*, creating the file and its schema when missing.

        Args:
            path: the journal file; its folder must exist.
            now: the clock for ``updated_at`` (defaults to :func:`time.time`).

        Raises:
            ConfigurationError: the file cannot be opened, is not a kling_async journal (with the
                path and the reason), or has another schema version.
        """
        text = os.fspath(path)
        limiter = anyio.CapacityLimiter(1)
        connection = await anyio.to_thread.run_sync(
            functools.partial(_connect, text, now()), limiter=limiter
        )
        return cls(connection, limiter, text, now=now)

    async def _run(self, function: Callable[[sqlite3.Connection], _T]) -> _T:
        connection = self._connection
        if connection is None:
            raise ConfigurationError(f"journal {self.path!r} is closed")
        return await anyio.to_thread.run_sync(function, connection, limiter=self._limiter)

    @staticmethod
    def _write(connection: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
        connection.execute("BEGIN IMMEDIATE")
        try:
            changed = connection.execute(sql, params).rowcount
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return changed

    async def record_intent(
        self, key: str, *, external_task_id: str, kind: str, request_json: str
    ) -> JournalEntry:
        """See :meth:`Journal.record_intent`."""
        now = self._now()

        def insert(connection: sqlite3.Connection) -> JournalEntry:
            connection.execute("BEGIN IMMEDIATE")
            try:
                # OR IGNORE keeps the first intent: its external_task_id is what may already
                # have reached the server.
                connection.execute(_SQL_INTENT, (key, external_task_id, kind, request_json, now))
                row = connection.execute(_SQL_GET, (key,)).fetchone()
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return _row_to_entry(row)

        return await self._run(insert)

    async def _update(self, key: str, sql: str, params: tuple[Any, ...]) -> None:
        changed = await self._run(
            functools.partial(self._write, sql=sql, params=(*params, self._now(), key))
        )
        if changed == 0:
            raise _unknown_key(key)

    async def record_created(self, key: str, task_id: str) -> None:
        """See :meth:`Journal.record_created`."""
        await self._update(key, _SQL_CREATED, (task_id,))

    async def record_status(self, key: str, status: str, *, error: str | None = None) -> None:
        """See :meth:`Journal.record_status`."""
        _check_status(status)
        await self._update(key, _SQL_STATUS, (status, error))

    async def record_download(self, key: str, file_path: str) -> None:
        """See :meth:`Journal.record_download`."""
        await self._update(key, _SQL_DOWNLOAD, (file_path,))

    async def entries(self) -> list[JournalEntry]:
        """See :meth:`Journal.entries`."""

        def select(connection: sqlite3.Connection) -> list[JournalEntry]:
            rows = connection.execute(_SQL_ALL).fetchall()
            return [_row_to_entry(row) for row in rows]

        return await self._run(select)

    async def get(self, key: str) -> JournalEntry | None:
        """See :meth:`Journal.get`."""

        def select(connection: sqlite3.Connection) -> JournalEntry | None:
            row = connection.execute(_SQL_GET, (key,)).fetchone()
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
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(connection.close, limiter=self._limiter)
