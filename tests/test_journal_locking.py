"""The journal under contention and on a failing disk (issue 14.5 and 14.6).

One journal, one run: an OS-level lock on ``<journal>.lock`` makes a second opener refuse; the
schema is created under SQLite's write lock; a write that the disk refuses is a StorageError
that leaves every earlier write in place.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import anyio.abc
import pytest

from kling_async import _sqlite_file as sqlite_file
from kling_async.errors import JournalLockedError, StorageError
from kling_async.journal import LOCK_SUFFIX, SqliteJournal

HOLDER = textwrap.dedent(
    """
    import sys
    import anyio
    from kling_async.journal import SqliteJournal

    async def main() -> None:
        async with await SqliteJournal.open(sys.argv[1]):
            print("holding", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)

    anyio.run(main)
    """
)


async def test_second_open_in_one_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    async with await SqliteJournal.open(path):
        with pytest.raises(JournalLockedError) as caught:
            await SqliteJournal.open(path)
        assert str(path) in str(caught.value)
        assert f"process {os.getpid()}" in str(caught.value)
        assert caught.value.path == str(path)
    # Released by aclose: the next run opens it.
    async with await SqliteJournal.open(path) as again:
        assert await again.entries() == []
    assert (tmp_path / f"batch.journal{LOCK_SUFFIX}").exists()


async def start_holder(path: Path) -> anyio.abc.Process:
    """A child process that opens the journal, says so, and keeps it until its stdin closes."""
    holder = await anyio.open_process([sys.executable, "-c", HOLDER, str(path)])
    assert holder.stdout is not None
    said = b""
    with anyio.fail_after(30):
        while not said.endswith(b"\n"):
            said += await holder.stdout.receive()
    assert said == b"holding\n"
    return holder


async def test_a_second_process_is_refused_until_the_first_ends(tmp_path: Path) -> None:
    """Regression: two processes on one journal both ran (and shared .part files)."""
    path = tmp_path / "batch.journal"
    async with await start_holder(path) as holder:
        with pytest.raises(JournalLockedError, match=f"in use by process {holder.pid}"):
            await SqliteJournal.open(path)
        assert holder.stdin is not None
        await holder.stdin.aclose()
        assert await holder.wait() == 0
    async with await SqliteJournal.open(path):
        pass


async def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    async with await start_holder(path) as holder:
        holder.kill()
        await holder.wait()
    async with await SqliteJournal.open(path) as journal:
        assert await journal.entries() == []


def test_schema_creation_waits_for_a_concurrent_creator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the tables were looked for before BEGIN IMMEDIATE, so an opener that raced
    another one found none, then failed with "table kling_journal_schema already exists".

    Another connection creates the schema and holds its transaction open until the opener has
    started its BEGIN IMMEDIATE (seen through SQLite's statement trace), then commits.
    """
    path = str(tmp_path / "new.journal")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    for statement in sqlite_file._SCHEMA:
        other.execute(statement)
    other.execute(sqlite_file._SQL_VERSION_INSERT, (sqlite_file.SCHEMA_VERSION, 0.0))

    begun = threading.Event()
    real_connect = sqlite3.connect

    def traced_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        connection = real_connect(*args, **kwargs)  # type: ignore[arg-type]

        def trace(statement: str) -> None:
            if statement.startswith("BEGIN IMMEDIATE"):
                begun.set()

        connection.set_trace_callback(trace)
        return connection

    monkeypatch.setattr(sqlite_file.sqlite3, "connect", traced_connect)
    outcome: list[object] = []

    def open_journal() -> None:
        try:
            outcome.append(sqlite_file.connect(path, 1.0))
        except Exception as exc:
            outcome.append(exc)

    opener = threading.Thread(target=open_journal)
    opener.start()
    assert begun.wait(timeout=10)
    other.execute("COMMIT")
    other.close()
    opener.join(timeout=20)
    assert len(outcome) == 1
    connection = outcome[0]
    assert isinstance(connection, sqlite3.Connection), connection
    try:
        assert connection.execute("SELECT COUNT(*) FROM kling_journal_schema").fetchone() == (1,)
    finally:
        connection.close()


async def test_unwritable_location_is_a_storage_error(tmp_path: Path) -> None:
    """A journal under a regular file (ENOTDIR): refused at open, with the path and why."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    path = blocker / "batch.journal"
    with pytest.raises(StorageError) as caught:
        await SqliteJournal.open(path)
    assert str(path) in str(caught.value)
    assert "ENOTDIR" in caught.value.reason or "Not a directory" in caught.value.reason


FILLER = textwrap.dedent(
    """
    import resource, sys
    import anyio
    from kling_async.errors import StorageError
    from kling_async.journal import SqliteJournal

    async def main() -> None:
        async with await SqliteJournal.open(sys.argv[1]) as journal:
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
            written = 0
            try:
                for index in range(10_000):
                    await journal.record_intent(
                        f"k{index}", external_task_id=f"e{index}", kind="text2video",
                        request_json="x" * 2000,
                    )
                    written += 1
            except StorageError as exc:
                print(written, exc.path, exc.reason, sep="|", flush=True)
                return
            print("never failed", flush=True)

    anyio.run(main)
    """
)


async def test_file_size_limit_stops_writes_cleanly(tmp_path: Path) -> None:
    """EFBIG (RLIMIT_FSIZE in a child): a StorageError naming the journal; every write that
    returned before it is still there, and the journal opens again."""
    path = tmp_path / "batch.journal"
    result = await anyio.run_process(
        [sys.executable, "-c", FILLER, str(path), str(256 * 1024)], check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    written_text, where, reason = result.stdout.decode().strip().split("|")
    written = int(written_text)
    assert written > 0
    assert where == str(path)
    if sys.version_info >= (3, 11):  # sqlite3 names its error codes from 3.11 on
        assert "SQLITE_IOERR" in reason or "SQLITE_FULL" in reason
    else:
        assert "disk I/O error" in reason or "database or disk is full" in reason
    assert f"file-size limit (ulimit -f) is {256 * 1024} bytes" in reason
    async with await SqliteJournal.open(path) as journal:
        entries = await journal.entries()
    assert [entry.key for entry in entries] == [f"k{index}" for index in range(written)]
