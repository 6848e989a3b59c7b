"""The SQLite file under ``SqliteJournal``: its schema, lock, first checks and disk-error diagnosis.

Everything here is blocking and runs on the journal's worker thread; ``journal.SqliteJournal``
holds the connection and decides when.
"""

from __future__ import annotations

import os
import sqlite3
import sys

from .errors import ConfigurationError, JournalLockedError, StorageError

__all__ = [
    "LOCK_SUFFIX",
    "SCHEMA_VERSION",
    "SQL_ALL",
    "SQL_CREATED",
    "SQL_DOWNLOAD",
    "SQL_GET",
    "SQL_INTENT",
    "SQL_STATUS",
    "connect",
    "lock",
    "rollback",
    "storage_error",
    "unlock",
]

SCHEMA_VERSION = 1
"""The version of the SQLite schema ``SqliteJournal`` writes."""

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
# Rewrites the schema row as it is: a real write (a WAL frame and an fsync), no change.
_SQL_PROBE = "UPDATE kling_journal_schema SET version = version"
SQL_INTENT = (
    "INSERT OR IGNORE INTO kling_journal_entries (key, external_task_id, kind, request_json, "
    "task_id, status, file_path, error, updated_at) "
    "VALUES (?, ?, ?, ?, NULL, 'pending', NULL, NULL, ?)"
)
_SQL_SELECT = (
    "SELECT key, external_task_id, kind, request_json, task_id, status, file_path, error, "
    "updated_at FROM kling_journal_entries"
)
SQL_GET = _SQL_SELECT + " WHERE key = ?"
SQL_ALL = _SQL_SELECT + " ORDER BY rowid"
SQL_CREATED = (
    "UPDATE kling_journal_entries SET task_id = ?, status = 'created', error = NULL, "
    "updated_at = ? WHERE key = ?"
)
SQL_STATUS = "UPDATE kling_journal_entries SET status = ?, error = ?, updated_at = ? WHERE key = ?"
SQL_DOWNLOAD = (
    "UPDATE kling_journal_entries SET file_path = ?, status = 'downloaded', error = NULL, "
    "updated_at = ? WHERE key = ?"
)


_LOW_SPACE = 1024 * 1024
"""Free bytes below which a failed write is blamed on a full disk."""

LOCK_SUFFIX = ".lock"
"""The sidecar file whose OS-level lock marks a journal as in use (``<journal>.lock``)."""


def lock(path: str) -> int | None:
    """Take the journal's lock for this process, or refuse; blocking, run in a worker thread.

    An ``flock`` on a sidecar file, not on the database: SQLite's own locks are per
    transaction, while this one is held for the whole run, and the OS drops it when the
    process dies (kill -9 included), so a crashed run never leaves a stale lock behind.
    Returns the descriptor to close on release (``None`` on Windows, which has no ``flock``).
    """
    if sys.platform == "win32":  # pragma: no cover - the tests run on POSIX
        return None
    import fcntl

    lock_path = path + LOCK_SUFFIX
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError.from_os_error(lock_path, exc, action="cannot create") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or None
        os.close(fd)
        raise JournalLockedError(path, holder) from None
    except OSError as exc:  # pragma: no cover - a file system without locks
        os.close(fd)
        raise StorageError.from_os_error(lock_path, exc, action="cannot lock") from None
    try:
        # Who holds it, for the message the next process prints.
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
    except OSError:
        pass  # a full disk: the lock itself still holds
    return fd


def unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def storage_error(path: str, error: sqlite3.Error) -> StorageError:
    # SQLite reports a full disk or a file-size limit as "disk I/O error" without the errno;
    # look at the two usual causes so that the user is told which one it is.
    name = getattr(error, "sqlite_errorname", None) or "SQLite"
    reason = f"{error} ({name})"
    hints = _disk_hints(os.path.dirname(os.path.abspath(path)))
    if hints:
        reason += "; " + "; ".join(hints)
    return StorageError(path, reason)


def _disk_hints(folder: str) -> list[str]:
    hints: list[str] = []
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # pragma: no cover - no statvfs on Windows
        stats = None
    if stats is not None and stats.f_bavail * stats.f_frsize < _LOW_SPACE:
        hints.append(f"the disk is full ({stats.f_bavail * stats.f_frsize} bytes free)")
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        limited = soft != resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):  # pragma: no cover - no rlimits on Windows
        soft, limited = -1, False
    if limited:
        hints.append(f"the file-size limit (ulimit -f) is {soft} bytes")
    return hints


def rollback(connection: sqlite3.Connection) -> None:
    # SQLite rolls back by itself after some errors (a full disk, an I/O error); a second
    # ROLLBACK would then fail and hide the real error.
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def connect(path: str, now: float) -> sqlite3.Connection:
    """Open (creating if needed) and check the journal file; blocking, run in the worker thread."""
    if os.path.isdir(path):
        raise ConfigurationError(f"journal {path!r} is a directory; give a file name")
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each write is exactly one
        # transaction. check_same_thread=False: anyio's worker threads are not always the same
        # thread, but the CapacityLimiter(1) guarantees one user at a time.
        connection = sqlite3.connect(
            path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StorageError(path, f"cannot open it as a journal ({exc})") from None
    try:
        _prepare(connection, path, now)
    except BaseException:
        connection.close()
        raise
    return connection


def _prepare(connection: sqlite3.Connection, path: str, now: float) -> None:
    try:
        # The write lock first, then the look at the schema: two processes opening a new
        # journal at once must not both find it empty and both create the tables.
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise storage_error(path, exc) from None
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(
            f"{path!r} is not a kling_async journal: not an SQLite database ({exc})"
        ) from None
    try:
        _check_schema(connection, path, now)
        connection.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        rollback(connection)
        raise storage_error(path, exc) from None
    except BaseException:
        rollback(connection)
        raise
    # WAL: a crash mid-write leaves the last committed state readable, and readers do not block
    # the writer. synchronous=FULL: every COMMIT is fsynced before it returns, so an entry the
    # batch saw recorded survives kill -9 or power loss; that durability is the journal's purpose.
    try:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()
    except sqlite3.OperationalError as exc:
        raise storage_error(path, exc) from None
    if mode is None or str(mode[0]).lower() != "wal":
        raise ConfigurationError(
            f"journal {path!r}: WAL mode is unavailable (got {mode[0] if mode else None!r}); "
            "use a file on a local file system"
        )
    connection.execute("PRAGMA synchronous=FULL")
    try:
        # One real write before the batch sends anything: a read-only file, a full disk or a
        # file-size limit shows up here, not after tasks were paid for.
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(_SQL_PROBE)
        connection.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        rollback(connection)
        raise storage_error(path, exc) from None


def _check_schema(connection: sqlite3.Connection, path: str, now: float) -> None:
    """Create the tables of a new journal, or check those of an existing one (in a transaction)."""
    try:
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(
            f"{path!r} is not a kling_async journal: not an SQLite database ({exc})"
        ) from None
    if not tables:
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.execute(_SQL_VERSION_INSERT, (SCHEMA_VERSION, now))
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
