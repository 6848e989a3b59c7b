"""BatchWorker against the in-process emulator and a real PostgreSQL: sharing, adoption, fencing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import anyio
import pytest

import kling_async as kling
from kling_async import wire
from kling_async.errors import ConfigurationError
from kling_async.journal import JournalEntry
from kling_async.journal_postgres import PostgresJournal
from kling_async.testing import FakeKlingServer
from kling_async.testing.clock import FakeClock
from kling_async.worker import BatchWorker

from .conftest import client_for
from .pg_support import pg_server_url, pg_url

__all__ = ["pg_server_url", "pg_url"]  # fixtures, imported for pytest


def _items(count: int) -> list[tuple[str, kling.TaskRequest]]:
    return [(f"k{n:03d}", kling.TextToVideo(prompt=f"scene {n}")) for n in range(count)]


def _request_json(request: kling.TaskRequest) -> str:
    return json.dumps(wire.request_body(request), sort_keys=True, separators=(",", ":"))


def _is_mp4(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 8 and data[4:8] == b"ftyp"


async def test_three_workers_share_a_batch(
    server: FakeKlingServer, pg_url: str, tmp_path: Path
) -> None:
    """Three workers, one batch: every input created once, downloaded once, all by someone."""
    items = _items(30)
    out = tmp_path / "out"
    done: dict[str, int] = {}

    async def worker(name: str) -> kling.BatchResult:
        async with (
            client_for(server) as client,
            await PostgresJournal.open(pg_url, batch="shared", owner=name) as journal,
        ):
            runner = BatchWorker(client, journal, out, chunk=4, lanes=2, lease=10)
            result = await runner.run(items)
            done[name] = runner.chunks_done
            return result

    results: list[kling.BatchResult] = []

    async def run(name: str) -> None:
        results.append(await worker(name))

    async with anyio.create_task_group() as group:
        for name in ("w1", "w2", "w3"):
            group.start_soon(run, name)
    assert all(result.ok for result in results)
    assert all(result.succeeded == 30 for result in results)
    assert sorted(server.create_counts.values()) == [1] * 30
    assert sum(done.values()) >= 30 // 4
    assert sorted(path.name for path in out.glob("*.mp4")) == [f"{key}.mp4" for key, _ in items]
    assert all(_is_mp4(path) for path in out.glob("*.mp4"))
    assert list(out.glob("*.part")) == []


async def test_a_dead_workers_items_are_adopted_not_paid_twice(
    server: FakeKlingServer, pg_url: str, tmp_path: Path
) -> None:
    """A worker died holding leases: its created task is polled, its ambiguous create looked
    up and adopted, its unsent intent created once, its untouched items created."""
    items = _items(6)
    requests = dict(items)
    async with (
        client_for(server) as client,
        await PostgresJournal.open(pg_url, batch="b", owner="dead") as dead,
        await PostgresJournal.open(pg_url, batch="b", owner="alive") as alive,
    ):
        await dead.seed([(key, "text2video", _request_json(req)) for key, req in items])
        assert len(await dead.claim(10, lease=30, max_claims=5)) == 6
        # k000: created and journaled. k001: created, answer lost (pending). k002: intent only.
        task0 = await client.submit(requests["k000"], external_task_id="ext-0")
        for key, ext in (("k000", "ext-0"), ("k001", "ext-1"), ("k002", "ext-2")):
            await dead.record_intent(
                key,
                external_task_id=ext,
                kind="text2video",
                request_json=_request_json(requests[key]),
            )
        await dead.record_created("k000", task0.id)
        await client.submit(requests["k001"], external_task_id="ext-1")
        # The worker is gone: its leases run out.
        await dead.renew([key for key, _ in items], lease=0)

        seen: list[JournalEntry] = []
        runner = BatchWorker(client, alive, tmp_path, chunk=3, lease=10, on_entry=seen.append)
        result = await runner.run(items)
    assert result.ok, [(e.key, e.status, e.error) for e in result.entries]
    assert server.create_counts["ext-0"] == 1
    assert server.create_counts["ext-1"] == 1
    assert server.create_counts["ext-2"] == 1
    assert len(server.create_counts) == 6
    assert {entry.key for entry in seen} == {key for key, _ in items}
    assert runner.chunks_done == 2


@pytest.mark.parametrize("noticed_by", ["renewal", "write"])
async def test_a_lost_lease_drops_the_chunk(
    server: FakeKlingServer, pg_url: str, tmp_path: Path, noticed_by: str
) -> None:
    """Another worker takes the items over mid-chunk: this one stops writing and moves on,
    whether its lease renewal notices first or its next (fenced) journal write."""
    items = _items(2)
    async with (
        client_for(server) as client,
        await PostgresJournal.open(pg_url, batch="b", owner="slow") as slow,
        await PostgresJournal.open(pg_url, batch="b", owner="thief") as thief,
    ):
        stolen = anyio.Event()

        def steal(entry: JournalEntry) -> None:
            if entry.status == "created" and not stolen.is_set():
                stolen.set()

        # A short lease is renewed (and the loss seen) at once; a long one is not renewed
        # before the slow worker's next write, which the fence refuses.
        lease = 0.3 if noticed_by == "renewal" else 60.0
        runner = BatchWorker(
            client, slow, tmp_path, chunk=2, lanes=1, lease=lease, max_claims=1, on_entry=steal
        )

        async def take_over() -> None:
            await stolen.wait()
            # The slow worker's leases are made to run out; another claims and keeps them.
            await slow.renew([key for key, _ in items], lease=0)
            assert await thief.claim(10, lease=60, max_claims=2)

        async with anyio.create_task_group() as group:
            group.start_soon(take_over)
            result = await runner.run(items)
    assert runner.leases_lost >= 1
    assert runner.chunks_done == 0
    assert not result.ok  # left to the thief, which never finished them
    assert all(count == 1 for count in server.create_counts.values())


async def test_workers_need_the_same_input(
    server: FakeKlingServer, pg_url: str, tmp_path: Path
) -> None:
    """A batch holding inputs this worker was not given: a clear error, leases given back."""
    async with (
        client_for(server) as client,
        await PostgresJournal.open(pg_url, batch="b", owner="w") as journal,
    ):
        await BatchWorker(client, journal, tmp_path).run(_items(1))
        await journal.seed([("other", "text2video", "{}")])
        with pytest.raises(ConfigurationError, match="same input"):
            await BatchWorker(client, journal, tmp_path).run(_items(1))
        assert await journal.claim(5, lease=5, max_claims=5) == ["other"]


async def test_bad_settings_are_refused(server: FakeKlingServer, pg_url: str) -> None:
    """Chunk, lanes, claims and lease are checked when the worker is made."""
    async with (
        client_for(server) as client,
        await PostgresJournal.open(pg_url, batch="b") as journal,
    ):
        for options in ({"chunk": 0}, {"lanes": 0}, {"max_claims": 0}, {"lease": 0}):
            with pytest.raises(ConfigurationError):
                BatchWorker(client, journal, Path("."), **options)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="duplicate"):
            await BatchWorker(client, journal, Path(".")).run(_items(1) * 2)
        assert await journal.batches() == []  # nothing was written


async def test_a_timeout_leaves_items_open(
    server: FakeKlingServer, pg_url: str, tmp_path: Path
) -> None:
    """The overall timeout ends the worker; unfinished items stay claimable for a re-run."""
    server.timeline = server.timeline.__class__(queue_seconds=30, processing_seconds=30)
    async with (
        client_for(server) as client,
        await PostgresJournal.open(pg_url, batch="b") as journal,
    ):
        result = await BatchWorker(client, journal, tmp_path, timeout=0.5).run(_items(2))
        assert result.timed_out
        assert result.incomplete == 2
        assert await journal.open_items(max_claims=5) == 2
        assert Counter(e.status for e in await journal.entries()) == {"created": 2}


async def test_idle_waits_and_the_timeout_are_on_the_injected_clock(
    server: FakeKlingServer, pg_url: str, tmp_path: Path
) -> None:
    """Every item leased by a live peer: the worker looks again every idle interval until its
    timeout, an hour of virtual time that passes in no wall time."""
    items = _items(2)
    clock = FakeClock()
    async with (
        client_for(server) as client,
        await PostgresJournal.open(pg_url, batch="b", owner="peer") as peer,
        await PostgresJournal.open(pg_url, batch="b", owner="idle") as journal,
    ):
        await peer.seed([(key, "text2video", _request_json(req)) for key, req in items])
        assert len(await peer.claim(10, lease=600, max_claims=5)) == 2
        runner = BatchWorker(
            client, journal, tmp_path, timeout=3600, idle_interval=600, clock=clock
        )
        with anyio.fail_after(60):  # wall time: an hour of real waiting would fail here
            async with clock.autojump():
                result = await runner.run(items)
    assert clock.now() == 3600.0
    assert result.timed_out
    assert runner.chunks_done == 0
    assert server.create_counts == {}
