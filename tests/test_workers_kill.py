"""Four worker processes on one PostgreSQL batch; two are SIGKILLed, the database restarts.

The emulator runs as its own process with random faults (5xx, connections dropped before and
after a create is recorded, unreadable answers), a request rate limit (1302) and 20 task slots
shared by all workers (1303), and holds every create's answer back 0.2 s after recording the task.
Four ``kling-async batch --journal postgresql://...`` workers share 400 prompts. One is SIGKILLed
early, while creates it sent are recorded but unanswered; another once 100 files are on disk; the
database is stopped and started again once 200 are; one new worker is started. Leases last 2 s,
so the dead workers' items are adopted quickly.

At the end every prompt has exactly one task on the emulator, the journal's task ids are exactly
the emulator's, every file is a complete MP4 named after its key, and no ``.part`` file is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from . import kill_support as kill
from .pg_support import LocalPostgres, fresh_schema_url

API_KEY = "sk-workers-0123456789"
PROMPTS = 400
BATCH = "prompts.txt"


@pytest.fixture
def emulator_url() -> Iterator[str]:
    """An emulator process: compressed timings, 20 slots, a rate limit, 5% random faults."""
    with kill.emulator_process(
        API_KEY, *kill.FAULTY_EMULATOR, "--rate", "150", "--seed", "12"
    ) as url:
        yield url


@pytest.fixture
def database() -> Iterator[tuple[LocalPostgres, str]]:
    """A cluster of this test's own (it is restarted mid-run), and a URL into a fresh schema."""
    server = LocalPostgres()
    try:
        server.start()
        yield server, fresh_schema_url(server.url)
    finally:
        server.cleanup()


def _emulator_tasks(url: str) -> list[dict[str, Any]]:
    return kill.emulator_tasks(url, API_KEY, attempts=60)


def _rows(url: str) -> list[tuple[str, str | None, str | None, str, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT key, external_task_id, task_id, status, file_path FROM kling_batch_items "
            "WHERE batch = %s",
            (BATCH,),
        ).fetchall()
    return [(str(r[0]), r[1], r[2], str(r[3]), r[4]) for r in rows]


def _count(url: str, where: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute(
                f"SELECT COUNT(*) FROM kling_batch_items WHERE {where}"  # type: ignore[arg-type]  # noqa: S608 - constant
            ).fetchone()
    except psycopg.Error:
        return 0  # not created yet, or restarting
    return int(row[0]) if row else 0


def _wait_for(
    condition: Callable[[], bool], processes: list[subprocess.Popen[bytes]], what: str
) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if condition():
            return
        if all(process.poll() is not None for process in processes):
            raise AssertionError(f"every worker exited before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_workers_killed_and_database_restarted(
    emulator_url: str, database: tuple[LocalPostgres, str], tmp_path: Path
) -> None:
    """Two SIGKILLs and a database restart: one task and one verified file per prompt."""
    server, db_url = database
    prompts = tmp_path / BATCH
    prompts.write_text("".join(f"Scene number {n}: a kite over dunes\n" for n in range(PROMPTS)))
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "kling_async.cli",
        "batch",
        str(prompts),
        "-o",
        str(out),
        "--journal",
        db_url,
        "--lease",
        "2",
        "--provider",
        "emulator",
        "--base-url",
        emulator_url,
        "--api-key",
        API_KEY,
        "--max-active",
        "10",
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("KLING_")}
    env.pop("COMETAPI_KEY", None)
    logs: list[Path] = []

    def start() -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(logs)}.log"
        logs.append(log)
        with log.open("wb") as sink:
            return subprocess.Popen(  # noqa: S603 - this interpreter, our own module
                command, stdout=sink, stderr=subprocess.STDOUT, env=env
            )

    def created() -> int:
        return _count(db_url, "task_id IS NOT NULL")

    def answers_held() -> bool:
        # The emulator recorded creates whose answers no worker has journaled yet.
        return created() > 0 and len(_emulator_tasks(emulator_url)) > created()

    def files() -> int:
        return sum(1 for _ in out.glob("*.mp4")) if out.exists() else 0

    workers = [start() for _ in range(4)]
    killed: list[subprocess.Popen[bytes]] = []

    def kill_one() -> None:
        victim = next(process for process in workers if process.poll() is None)
        victim.kill()  # SIGKILL: no cleanup, leases simply stop being renewed
        victim.wait()
        killed.append(victim)

    orphans: list[dict[str, Any]] = []
    try:
        # The kill must land while a create is recorded but not journaled. Whether the worker
        # killed had one in flight is chance: if not, a new worker takes its place and the
        # next one is killed, while creates are still being sent.
        for _ in range(6):
            _wait_for(answers_held, workers, "creates recorded but not answered")
            kill_one()
            journaled = {row[1] for row in _rows(db_url) if row[2] is not None}
            # Creates the emulator recorded whose answers died with the process (or are still
            # on their way to a live worker): the dead one's must be found by external id, not
            # re-paid.
            orphans = [
                task
                for task in _emulator_tasks(emulator_url)
                if task["task_info"].get("external_task_id") not in journaled
            ]
            if orphans or created() >= PROMPTS:
                break
            workers.append(start())
        _wait_for(lambda: files() >= 100, workers, "100 files")
        kill_one()
        _wait_for(lambda: files() >= 200, workers, "200 files")
        server.stop()  # every worker loses its connections mid-call
        time.sleep(0.5)
        server.start()
        workers.append(start())
        for process in workers:
            if process not in killed:
                process.wait(timeout=150)
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = "\n".join(log.read_text(errors="replace")[-1500:] for log in logs)
    assert len(killed) >= 2
    assert all(process.returncode == -9 for process in killed), output
    assert [process.returncode for process in workers if process not in killed] == [0] * (
        len(workers) - len(killed)
    ), output

    rows = _rows(db_url)
    assert len(rows) == PROMPTS
    assert Counter(row[3] for row in rows) == {"downloaded": PROMPTS}
    _, by_external = kill.one_task_per_prompt(_emulator_tasks(emulator_url), PROMPTS)
    assert {row[2] for row in rows} == set(by_external.values())
    for key, external_id, task_id, _status, file_path in rows:
        assert by_external[external_id] == task_id, f"{key}: journal and emulator disagree"
        kill.assert_complete_mp4(out, key, file_path)
    kill.assert_only_these_files(out, [row[0] for row in rows])
    assert orphans, "the first kill did not land between a create and its journal entry"
    # The dead workers' items were claimed again by the others (adopted, not re-created).
    assert _count(db_url, "claims > 1") > 0
