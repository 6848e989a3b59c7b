"""The PostgreSQL journal against a real server: schema, migrations, claims, leases, fencing."""

from __future__ import annotations

import socket

import anyio
import psycopg
import pytest

from kling_async.errors import (
    ConfigurationError,
    JournalError,
    JournalUnavailableError,
    LeaseLostError,
)
from kling_async.journal_postgres import (
    MIGRATIONS,
    PG_SCHEMA_VERSION,
    PostgresJournal,
    is_postgres_url,
    redact_url,
)

from .pg_support import LocalPostgres, fresh_schema_url, pg_server_url, pg_url

__all__ = ["pg_server_url", "pg_url"]  # fixtures, imported for pytest


def _versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version FROM kling_schema_version ORDER BY version").fetchall()
    return [int(row[0]) for row in rows]


async def test_open_creates_the_schema_once(pg_url: str) -> None:
    """A new database gets every migration, recorded; opening again changes nothing."""
    async with await PostgresJournal.open(pg_url, batch="b") as journal:
        assert await journal.entries() == []
    async with await PostgresJournal.open(pg_url, batch="b"):
        pass
    assert _versions(pg_url) == [version for version, _ in MIGRATIONS]
    assert MIGRATIONS[-1][0] == PG_SCHEMA_VERSION


async def test_a_version_1_database_is_migrated_forward_with_its_rows(pg_url: str) -> None:
    """A database left at version 1 gains the lease columns; its rows survive."""
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "CREATE TABLE kling_schema_version (version INTEGER PRIMARY KEY, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for statement in MIGRATIONS[0][1]:
            conn.execute(statement)  # type: ignore[arg-type]  # constant SQL
        conn.execute("INSERT INTO kling_schema_version (version) VALUES (1)")
        conn.execute(
            "INSERT INTO kling_batch_items (batch, key, external_task_id, kind, request_json, "
            "task_id, status, updated_at) VALUES ('old', 'k1', 'ext-1', 'text2video', '{}', "
            "'t-1', 'created', 1.0)"
        )
    async with await PostgresJournal.open(pg_url, batch="old") as journal:
        entry = await journal.get("k1")
        assert entry is not None
        assert (entry.task_id, entry.status, entry.external_task_id) == ("t-1", "created", "ext-1")
        # The migrated row is claimable: the new columns exist and default sensibly.
        assert await journal.claim(10, lease=30, max_claims=3) == ["k1"]
    assert _versions(pg_url) == [1, 2]


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    """A database migrated by a newer kling_async is not written by this one."""
    async with await PostgresJournal.open(pg_url, batch="b"):
        pass
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO kling_schema_version (version) VALUES (%s)", (99,))
    with pytest.raises(ConfigurationError, match="schema version 99"):
        await PostgresJournal.open(pg_url, batch="b")


async def test_journal_protocol(pg_url: str) -> None:
    """Intent, task id, status and download, as SqliteJournal records them."""
    async with await PostgresJournal.open(pg_url, batch="b", now=lambda: 5.0) as journal:
        first = await journal.record_intent(
            "a", external_task_id="ext-a", kind="text2video", request_json="{}"
        )
        again = await journal.record_intent(
            "a", external_task_id="ext-other", kind="text2video", request_json="{}"
        )
        assert first == again
        assert (first.external_task_id, first.status, first.updated_at) == ("ext-a", "pending", 5)
        await journal.record_created("a", "task-1")
        await journal.record_status("a", "succeed")
        await journal.record_download("a", "/out/a.mp4")
        entry = await journal.get("a")
        assert entry is not None
        assert (entry.task_id, entry.status, entry.file_path) == (
            "task-1",
            "downloaded",
            "/out/a.mp4",
        )
        assert await journal.get("missing") is None
        with pytest.raises(ConfigurationError, match="no entry 'missing'"):
            await journal.record_created("missing", "t")
        with pytest.raises(ConfigurationError, match="unknown journal status"):
            await journal.record_status("a", "exploded")
        status = await journal.status()
        assert status.counts == {"downloaded": 1}
        assert status.finished == status.total == 1


async def test_batches_are_separate(pg_url: str) -> None:
    """Two batch names in one database never see each other's items."""
    async with (
        await PostgresJournal.open(pg_url, batch="one") as one,
        await PostgresJournal.open(pg_url, batch="two") as two,
    ):
        await one.record_intent("k", external_task_id="e1", kind="text2video", request_json="{}")
        await two.record_intent("k", external_task_id="e2", kind="text2video", request_json="{}")
        assert [e.external_task_id for e in await one.entries()] == ["e1"]
        assert [e.external_task_id for e in await two.entries()] == ["e2"]
        assert await one.batches() == ["one", "two"]


async def test_seed_then_claims_are_disjoint_and_leases_fence_writes(pg_url: str) -> None:
    """Concurrent claims never overlap; after a takeover the old owner's writes are refused."""
    items = [(f"k{n:02d}", "text2video", "{}") for n in range(30)]
    async with (
        await PostgresJournal.open(pg_url, batch="b", owner="w1") as w1,
        await PostgresJournal.open(pg_url, batch="b", owner="w2") as w2,
        await PostgresJournal.open(pg_url, batch="b", owner="w3") as w3,
    ):
        await w1.seed(items)
        await w2.seed(items)  # every worker seeds; the second adds nothing
        assert await w1.entries() == []  # seeded inputs have no intent yet
        assert await w1.open_items(max_claims=3) == 30

        claimed: dict[str, list[str]] = {}

        async def claim(journal: PostgresJournal) -> None:
            claimed[journal.owner] = await journal.claim(12, lease=30, max_claims=3)

        async with anyio.create_task_group() as group:
            for journal in (w1, w2, w3):
                group.start_soon(claim, journal)
        together = [key for keys in claimed.values() for key in keys]
        assert sorted(together) == sorted(key for key, _, _ in items)  # 12 + 12 + 6, no overlap
        assert sorted(len(keys) for keys in claimed.values()) == [6, 12, 12]
        assert await w1.claim(5, lease=30, max_claims=3) == []  # all leased

        mine = claimed["w1"]
        assert await w1.renew(mine, lease=30) == set(mine)
        assert await w2.renew(mine, lease=30) == set()  # not w2's

        # w1's lease runs out (lease 0: expired at once) and w2 takes its items over.
        await w1.renew(mine, lease=0)
        taken = await w2.claim(100, lease=30, max_claims=3)
        assert sorted(taken) == sorted(mine)
        with pytest.raises(LeaseLostError, match="now held by w2"):
            await w1.record_intent(
                mine[0], external_task_id="late", kind="text2video", request_json="{}"
            )
        entry = await w2.record_intent(
            mine[0], external_task_id="x-2", kind="text2video", request_json="{}"
        )
        assert entry.status == "pending"
        with pytest.raises(LeaseLostError):
            await w1.record_status(mine[0], "failed", error="stale")
        await w2.record_created(mine[0], "task-2")
        await w2.release(taken)
        # Released and not finished: claimable again, while claims remain.
        assert len(await w3.claim(100, lease=30, max_claims=3)) == len(mine)


async def test_claims_are_bounded_and_finished_items_are_not_claimed(pg_url: str) -> None:
    """An item claimed max_claims times is left alone; downloaded and failed ones are done."""
    async with await PostgresJournal.open(pg_url, batch="b", owner="w") as journal:
        await journal.seed([(key, "text2video", "{}") for key in ("a", "b", "c", "d")])
        assert await journal.claim(10, lease=0, max_claims=2) == ["a", "b", "c", "d"]
        for key, task_id in (("a", "t-a"), ("b", "t-b"), ("c", None)):
            await journal.record_intent(
                key, external_task_id=f"e-{key}", kind="text2video", request_json="{}"
            )
            if task_id:
                await journal.record_created(key, task_id)
        await journal.record_download("a", "/a.mp4")
        await journal.record_status("b", "failed", error="task failed: policy")
        await journal.record_status("c", "failed", error="create refused: 500")
        # a: done; b: its task failed (re-running would pay again); c: refused, so sent again.
        assert await journal.claim(10, lease=0, max_claims=2) == ["c", "d"]
        assert await journal.claim(10, lease=0, max_claims=2) == []  # claimed twice: left
        assert await journal.open_items(max_claims=2) == 0
        status = await journal.status()
        assert status.counts == {"downloaded": 1, "failed": 2, "queued": 1}
        assert ("failed", "create refused: 500", 1) in status.failures
        assert status.per_minute > 0
        assert status.eta_seconds is not None


async def test_succeeded_items_stay_open_only_for_downloading_workers(pg_url: str) -> None:
    """Without downloads, a succeeded task is finished."""
    async with await PostgresJournal.open(pg_url, batch="b", owner="w") as journal:
        await journal.record_intent("a", external_task_id="e", kind="text2video", request_json="{}")
        await journal.record_created("a", "t")
        await journal.record_status("a", "succeed")
        assert await journal.open_items(max_claims=5, downloads=False) == 0
        assert await journal.open_items(max_claims=5, downloads=True) == 1


async def test_seed_refuses_a_changed_input(pg_url: str) -> None:
    """A key already in the batch with another request: nothing is added."""
    async with await PostgresJournal.open(pg_url, batch="b") as journal:
        await journal.seed([("a", "text2video", '{"prompt":"x"}')])
        with pytest.raises(ConfigurationError, match="different request"):
            await journal.seed([("a", "text2video", '{"prompt":"y"}'), ("b", "text2video", "{}")])
        assert await journal.open_items(max_claims=5) == 1


async def test_a_batch_seeded_with_a_plain_callback_token_still_matches(pg_url: str) -> None:
    """Seeded before tokens were hidden (the token in request_json): the same input re-seeded
    today is no change; another token-bearing field (a signed image URL) is compared as is."""
    plain = '{"callback_url":"https://h.example/k?token=s3cret","duration":"5","prompt":"x"}'
    hidden = plain.replace("s3cret", "<redacted>")
    signed = '{"image":"https://cdn.example/a.png?token=abc","prompt":"x"}'
    async with await PostgresJournal.open(pg_url, batch="b") as journal:
        await journal.seed([("a", "text2video", plain), ("b", "image2video", signed)])
        await journal.seed([("a", "text2video", hidden), ("b", "image2video", signed)])
        with pytest.raises(ConfigurationError, match="different request"):
            await journal.seed([("b", "image2video", signed.replace("abc", "<redacted>"))])


async def test_only_limits_entries_to_a_claim(pg_url: str) -> None:
    """A view over some keys lists only them and leaves the shared pool open."""
    async with await PostgresJournal.open(pg_url, batch="b") as journal:
        for key in ("a", "b", "c"):
            await journal.record_intent(
                key, external_task_id=key, kind="text2video", request_json="{}"
            )
        view = journal.only(["a", "c"])
        assert [entry.key for entry in await view.entries()] == ["a", "c"]
        await view.aclose()
        assert len(await journal.entries()) == 3
    with pytest.raises(ConfigurationError, match="closed"):
        await journal.entries()


async def test_a_refused_statement_is_a_journal_error(pg_url: str) -> None:
    """Not a lost connection (here: the table is gone): JournalError at once, no retries."""
    async with await PostgresJournal.open(pg_url, batch="b") as journal:
        with psycopg.connect(pg_url) as conn:
            conn.execute("ALTER TABLE kling_batch_items RENAME TO kling_renamed")
        with pytest.raises(JournalError, match="refused the journal: UndefinedTable"):
            await journal.entries()
        with pytest.raises(ConfigurationError, match="batch name"):
            journal.for_batch("")
    await journal.aclose()  # twice: nothing happens


async def test_bad_urls_fail_before_any_connection() -> None:
    """Not a PostgreSQL URL, or no batch name: a typed error, and no password in it."""
    with pytest.raises(ConfigurationError, match=r"\*\*\*") as info:
        await PostgresJournal.open("mysql://u:hunter2@db/x", batch="b")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError, match="batch name"):
        await PostgresJournal.open("postgresql://db/x", batch="")
    with pytest.raises(ConfigurationError, match="max_connections"):
        await PostgresJournal.open("postgresql://db/x", batch="b", max_connections=0)
    assert is_postgres_url("postgres://db/x")
    assert not is_postgres_url("journal.sqlite3")
    assert redact_url("postgresql://db/x") == "postgresql://db/x"
    assert redact_url("postgresql://u@db/x") == "postgresql://u@db/x"
    assert redact_url("nonsense") == "<not a URL>"


async def test_an_unreachable_server_is_a_typed_error() -> None:
    """Nothing listens: JournalUnavailableError once the reconnect time is up, no password."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        url = f"postgresql://kling:hunter2@127.0.0.1:{port}/x"
        with pytest.raises(JournalUnavailableError) as info:
            await PostgresJournal.open(url, batch="b", connect_timeout=0.5)
    assert "hunter2" not in str(info.value)
    assert "refused" in str(info.value)
    assert "***" in str(info.value)


async def test_repr_hides_the_password(pg_url: str) -> None:
    """The journal's repr names the batch and worker, never the password."""
    async with await PostgresJournal.open(pg_url, batch="b", owner="w9") as journal:
        assert "w9" in repr(journal)
    journal = PostgresJournal.__new__(PostgresJournal)
    journal.batch, journal.owner, journal._url = "b", "w", "postgresql://u:pw123@h/d"
    assert "pw123" not in repr(journal)


async def test_writes_survive_a_server_restart() -> None:
    """The server stops and comes back: the next calls reconnect, nothing is lost."""
    server = LocalPostgres()
    try:
        await anyio.to_thread.run_sync(server.start)
        url = fresh_schema_url(server.url)
        async with await PostgresJournal.open(url, batch="b", reconnect_timeout=30) as journal:
            await journal.record_intent(
                "a", external_task_id="e", kind="text2video", request_json="{}"
            )
            await anyio.to_thread.run_sync(server.stop)

            async def restart() -> None:
                await anyio.sleep(0.5)
                await anyio.to_thread.run_sync(server.start)

            async with anyio.create_task_group() as group:
                group.start_soon(restart)
                # Issued while the server is down: retried until it is back.
                await journal.record_created("a", "task-1")
            entry = await journal.get("a")
            assert entry is not None
            assert (entry.task_id, entry.status) == ("task-1", "created")
    finally:
        await anyio.to_thread.run_sync(server.cleanup)
