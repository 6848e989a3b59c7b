"""The batch journal: idempotent intents, durability across a hard kill, and file checks."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from kling_async.errors import ConfigurationError
from kling_async.journal import InMemoryJournal, Journal, JournalEntry, SqliteJournal


class Ticks:
    """A clock for ``updated_at`` that advances by one on every reading."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        self.value += 1
        return self.value


@pytest.fixture(params=["sqlite", "memory"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Journal]:
    opened: Journal
    if request.param == "sqlite":
        opened = await SqliteJournal.open(tmp_path / "batch.journal", now=Ticks())
    else:
        opened = InMemoryJournal(now=Ticks())
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_intent_is_idempotent(journal: Journal) -> None:
    first = await journal.record_intent(
        "line-1", external_task_id="ext-1", kind="text2video", request_json='{"prompt": "a"}'
    )
    assert first == JournalEntry(
        key="line-1",
        external_task_id="ext-1",
        kind="text2video",
        request_json='{"prompt": "a"}',
        task_id=None,
        status="pending",
        file_path=None,
        error=None,
        updated_at=first.updated_at,
    )
    again = await journal.record_intent(
        "line-1", external_task_id="ext-OTHER", kind="image2video", request_json="{}"
    )
    assert again == first  # same external_task_id: a resumed batch re-sends the same id
    assert await journal.entries() == [first]


async def test_lifecycle(journal: Journal) -> None:
    await journal.record_intent("a", external_task_id="e-a", kind="text2video", request_json="{}")
    await journal.record_intent("b", external_task_id="e-b", kind="text2video", request_json="{}")
    await journal.record_status("b", "uncertain", error="connection reset")
    await journal.record_created("a", "task-1")
    created = await journal.get("a")
    assert created is not None
    assert (created.task_id, created.status) == ("task-1", "created")
    await journal.record_status("a", "succeed")
    await journal.record_download("a", "out/task-1-v.mp4")
    done = await journal.get("a")
    assert done is not None
    assert (done.status, done.file_path, done.error) == ("downloaded", "out/task-1-v.mp4", None)
    assert done.updated_at > created.updated_at
    uncertain = await journal.get("b")
    assert uncertain is not None
    assert (uncertain.status, uncertain.error) == ("uncertain", "connection reset")
    assert [entry.key for entry in await journal.entries()] == ["a", "b"]
    assert await journal.get("missing") is None


async def test_rejects_unknown_keys_and_statuses(journal: Journal) -> None:
    with pytest.raises(ConfigurationError, match="no entry"):
        await journal.record_created("nope", "t")
    with pytest.raises(ConfigurationError, match="no entry"):
        await journal.record_status("nope", "failed")
    await journal.record_intent("a", external_task_id="e", kind="text2video", request_json="{}")
    with pytest.raises(ConfigurationError, match="unknown journal status"):
        await journal.record_status("a", "done")


async def test_concurrent_writers(journal: Journal) -> None:
    async def worker(n: int) -> None:
        key = f"k{n}"
        await journal.record_intent(key, external_task_id=f"e{n}", kind="t", request_json="{}")
        await journal.record_created(key, f"task{n}")
        await journal.record_status(key, "succeed")

    async with anyio.create_task_group() as group:
        for n in range(60):
            group.start_soon(worker, n)
    entries = await journal.entries()
    assert len(entries) == 60
    assert {entry.status for entry in entries} == {"succeed"}
    assert {entry.task_id for entry in entries} == {f"task{n}" for n in range(60)}


async def test_wal_mode_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    async with await SqliteJournal.open(path) as journal:
        assert await journal.journal_mode() == "wal"
        await journal.record_intent("a", external_task_id="e", kind="text2video", request_json="{}")
        await journal.record_created("a", "task-1")
    async with await SqliteJournal.open(str(path)) as reopened:
        [entry] = await reopened.entries()
        assert (entry.key, entry.task_id, entry.status) == ("a", "task-1", "created")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version FROM kling_journal_schema").fetchall() == [(1,)]
    raw.close()


async def test_writes_are_visible_without_aclose(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    first = await SqliteJournal.open(path)
    try:
        await first.record_intent("a", external_task_id="e", kind="text2video", request_json="{}")
        await first.record_created("a", "task-1")
        # A plain reader sees every committed write while the journal is still open (a second
        # SqliteJournal would be refused: the journal is locked for its run).
        with contextlib.closing(sqlite3.connect(path)) as reader:
            row = reader.execute(
                "SELECT task_id FROM kling_journal_entries WHERE key = 'a'"
            ).fetchone()
        assert row == ("task-1",)
    finally:
        await first.aclose()


async def test_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    script = textwrap.dedent(
        """
        import os, signal, sys
        import anyio
        from kling_async.journal import SqliteJournal

        async def main() -> None:
            journal = await SqliteJournal.open(sys.argv[1])
            for n in range(20):
                await journal.record_intent(
                    f"k{n}", external_task_id=f"e{n}", kind="text2video", request_json="{}"
                )
                await journal.record_created(f"k{n}", f"task{n}")
            await journal.record_status("k3", "uncertain", error="reset")
            os.kill(os.getpid(), signal.SIGKILL)

        anyio.run(main)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = await anyio.to_thread.run_sync(
        lambda: subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", script, str(path)], env=env, capture_output=True, timeout=60
        )
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    async with await SqliteJournal.open(path) as journal:
        entries = await journal.entries()
        assert [entry.key for entry in entries] == [f"k{n}" for n in range(20)]
        assert all(entry.task_id == f"task{n}" for n, entry in enumerate(entries))
        assert entries[3].status == "uncertain"


async def test_dropped_object_keeps_committed_entries(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    journal = await SqliteJournal.open(path)
    await journal.record_intent("a", external_task_id="e", kind="text2video", request_json="{}")
    connection = journal._connection
    del journal
    gc.collect()
    async with await SqliteJournal.open(path) as reopened:
        assert [entry.key for entry in await reopened.entries()] == ["a"]
    assert connection is not None
    connection.close()  # only to keep the test run free of ResourceWarnings


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"this is a text file, not a database\n" * 40, "not an SQLite database"),
        (b"\x00\x01garbage" * 500, "not an SQLite database"),
    ],
)
async def test_non_journal_file_is_rejected(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=reason) as caught:
        await SqliteJournal.open(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == content  # untouched


async def test_foreign_sqlite_database_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE users (id INTEGER)")
    raw.close()
    with pytest.raises(ConfigurationError, match="without the journal tables"):
        await SqliteJournal.open(path)


async def test_newer_schema_version_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "batch.journal"
    await (await SqliteJournal.open(path)).aclose()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE kling_journal_schema SET version = 99")
    raw.close()
    with pytest.raises(ConfigurationError, match="schema version 99"):
        await SqliteJournal.open(path)


async def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="journal"):
        await SqliteJournal.open(tmp_path)


async def test_closed_journal_refuses_work(tmp_path: Path) -> None:
    journal = await SqliteJournal.open(tmp_path / "batch.journal")
    await journal.aclose()
    await journal.aclose()
    with pytest.raises(ConfigurationError, match="closed"):
        await journal.entries()
