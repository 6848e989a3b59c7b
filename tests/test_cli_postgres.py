"""The command line with a postgresql:// journal: a worker per command, and the status view."""

from __future__ import annotations

from pathlib import Path

from kling_async.cli_postgres import format_status
from kling_async.journal_postgres import BatchStatus
from kling_async.testing import FakeKlingServer

from .cli_support import API_KEY, invoke
from .pg_support import pg_server_url, pg_url

__all__ = ["pg_server_url", "pg_url"]  # fixtures, imported for pytest


def _connect(server: FakeKlingServer) -> list[str]:
    return ["--provider", "emulator", "--base-url", server.url, "--api-key", API_KEY]


def test_batch_worker_then_status(emulator: FakeKlingServer, pg_url: str, tmp_path: Path) -> None:
    """A worker runs the batch to the end; status shows it done from the journal alone."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt number {n}\n" for n in range(6)))
    out = tmp_path / "out"
    args = [*_connect(emulator), "batch", str(prompts), "-o", str(out), "--journal", pg_url]
    result = invoke([*args, "--lease", "5"])
    assert result.exit_code == 0, result.output
    assert "6 succeeded, 0 failed, 0 uncertain, 0 unfinished" in result.output
    assert sorted(path.name for path in out.glob("*.mp4")) == [
        f"line-{n:04d}.mp4" for n in range(1, 7)
    ]
    assert emulator.stats.routes["create"] == 6

    again = invoke(args)  # a second worker finds nothing left to do
    assert again.exit_code == 0, again.output
    assert emulator.stats.routes["create"] == 6

    shown = invoke(["status", "--journal", pg_url])
    assert shown.exit_code == 0, shown.output
    assert "batch prompts.txt: 6 of 6 finished" in shown.output
    assert "downloaded 6" in shown.output
    assert "done" in shown.output

    named = invoke(["status", "--journal", pg_url, "--batch-name", "other"])
    assert named.exit_code == 0, named.output
    assert "batch other: 0 of 0 finished" in named.output


def test_status_of_an_empty_journal(pg_url: str) -> None:
    """A journal database without batches says so."""
    shown = invoke(["status", "--journal", pg_url])
    assert shown.exit_code == 0, shown.output
    assert "no batches in this journal" in shown.output


def test_usage_errors(emulator: FakeKlingServer, tmp_path: Path) -> None:
    """Wrong combinations are one-line usage errors, with nothing sent."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    named = invoke(
        [*_connect(emulator), "batch", str(prompts), "-o", str(tmp_path), "--batch-name", "x"]
    )
    assert named.exit_code == 2
    assert "--batch-name needs a postgresql:// --journal" in named.output
    for args in (
        ["status"],
        ["status", "123", "--journal", "postgresql://db/x"],
        ["status", "--journal", "journal.sqlite3"],
    ):
        result = invoke(args)
        assert result.exit_code == 2, args
        assert "Traceback" not in result.output
    assert emulator.requests == []


def test_format_status_rate_eta_and_failures() -> None:
    """The status lines: counts in state order, rate, ETA and failure reasons."""
    status = BatchStatus(
        batch="b",
        counts={"downloaded": 60, "created": 30, "failed": 2, "uncertain": 1, "queued": 7},
        leased=31,
        workers=3,
        per_minute=30.0,
        failures=(("failed", "content risk control", 2), ("uncertain", "", 1)),
    )
    lines = format_status(status)
    assert lines[0] == "batch b: 62 of 100 finished"
    assert lines[1] == "  queued 7 · created 30 · downloaded 60 · failed 2 · uncertain 1"
    assert lines[2] == "  3 worker(s) live, 31 item(s) leased"
    assert lines[3] == "  throughput 30.0/min, ETA 1m16s"
    assert lines[5].split() == ["failed", "2", "content", "risk", "control"]
    assert lines[6].split() == ["uncertain", "1", "no", "reason", "given"]
    slow = BatchStatus("b", {"queued": 10_000}, 0, 0, 1.0, ())
    assert format_status(slow)[3] == "  throughput 1.0/min, ETA 166h40m"
    idle = BatchStatus("b", {"created": 3}, 3, 1, 0.0, ())
    assert "ETA unknown" in format_status(idle)[3]
    quick = BatchStatus("b", {"created": 1, "downloaded": 1}, 1, 1, 6.0, ())
    assert format_status(quick)[3] == "  throughput 6.0/min, ETA 10s"
