"""``kling-async batch`` on a failing disk: one line, a distinct exit code, a consistent journal,
and a re-run that finishes without paying twice (issue 14.5, 14.6).

ENOSPC is simulated by patching the download's ``.part`` writes, EFBIG with RLIMIT_FSIZE in a
child process (Python ignores SIGXFSZ, so the write fails instead of killing the process), an
unwritable location with a path below a regular file (the tests may run as root, for whom
permission bits do not stop a write).
"""

from __future__ import annotations

import errno
import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from kling_async import download
from kling_async.cli import EXIT_JOURNAL_BUSY, EXIT_OK, EXIT_STORAGE
from kling_async.testing import FakeKlingServer, Timeline

from .cli_support import API_KEY, ThreadedEmulator, invoke
from .test_journal_locking import HOLDER

JOURNAL = ".kling-journal.sqlite3"


def connect(server: FakeKlingServer) -> list[str]:
    return ["--provider", "emulator", "--base-url", server.url, "--api-key", API_KEY]


def prompts_file(folder: Path, count: int) -> Path:
    path = folder / "prompts.txt"
    path.write_text("".join(f"prompt number {index}\n" for index in range(count)))
    return path


def journal_rows(path: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(path) as raw:
        rows = raw.execute(
            "SELECT key, status, task_id FROM kling_journal_entries ORDER BY rowid"
        ).fetchall()
    raw.close()
    return [(str(key), str(status), task_id) for key, status, task_id in rows]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


class FullDisk:
    """A ``.part`` handle whose writes fail with ENOSPC; everything else is the real file."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def test_enospc_in_a_download_stops_the_batch_with_one_line(
    emulator: FakeKlingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a full disk ended in an OSError traceback and exit 1."""
    prompts = prompts_file(tmp_path, 3)
    out = tmp_path / "out"
    real = download._open_part
    monkeypatch.setattr(download, "_open_part", lambda part, offset: FullDisk(real(part, offset)))
    result = invoke([*connect(emulator), "batch", str(prompts), "-o", str(out)])
    assert result.exit_code == EXIT_STORAGE, result.output
    assert "Traceback" not in result.output
    [line] = error_lines(result.output)
    assert ".mp4.part: No space left on device (ENOSPC)" in line
    assert str(out) in line
    assert f"run again: kling-async batch {prompts} --out {out} --provider emulator" in line
    assert API_KEY not in result.output
    rows = journal_rows(out / JOURNAL)
    # Consistent: nothing is "downloaded" without its file; created tasks kept their ids.
    assert all(status != "downloaded" for _, status, _ in rows)
    assert all(task_id for _, status, task_id in rows if status in ("created", "succeed"))
    creates = len(emulator.tasks)

    monkeypatch.setattr(download, "_open_part", real)
    again = invoke([*connect(emulator), "batch", str(prompts), "-o", str(out)])
    assert again.exit_code == EXIT_OK, again.output
    assert len(emulator.tasks) == creates == 3  # nothing paid twice
    assert sorted(path.name for path in out.glob("*.mp4")) == [
        "line-0001.mp4",
        "line-0002.mp4",
        "line-0003.mp4",
    ]
    assert not list(out.glob("*.part"))


def test_unwritable_journal_location_fails_before_any_create(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """--journal below a regular file: exit 3 naming it, and not one request sent."""
    prompts = prompts_file(tmp_path, 2)
    blocker = tmp_path / "file"
    blocker.write_text("")
    journal = blocker / "batch.journal"
    result = invoke(
        [
            *connect(emulator),
            "batch",
            str(prompts),
            "-o",
            str(tmp_path / "out"),
            "--journal",
            str(journal),
        ]
    )
    assert result.exit_code == EXIT_STORAGE, result.output
    [line] = error_lines(result.output)
    assert str(journal) in line
    assert f"--journal {journal}" in line  # the re-run command keeps the option
    assert emulator.requests == []


def test_second_batch_on_one_journal_is_refused(emulator: FakeKlingServer, tmp_path: Path) -> None:
    """Regression: a batch started twice shared .part files and crashed; now the second one
    refuses at once, exit 4, naming the journal and the process that holds it."""
    prompts = prompts_file(tmp_path, 2)
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
        [sys.executable, "-c", HOLDER, str(out / JOURNAL)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"
        result = invoke([*connect(emulator), "batch", str(prompts), "-o", str(out)])
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        assert holder.stdout is not None
        holder.stdout.close()
    assert result.exit_code == EXIT_JOURNAL_BUSY, result.output
    [line] = error_lines(result.output)
    assert f"journal {out / JOURNAL} is in use by process {holder.pid}" in line
    assert emulator.requests == []


def test_two_downloads_never_share_a_part_file(tmp_path: Path) -> None:
    """A .part another process is writing (it holds the lock) is refused, not written into."""
    import fcntl

    part = tmp_path / "video.mp4.part"
    with part.open("wb") as other:
        other.write(b"theirs")
        other.flush()
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(download.DownloadError, match="being written by another download"):
            download._open_part(part, 0)
        assert part.read_bytes() == b"theirs"  # not truncated
    handle = download._open_part(part, 0)
    handle.close()
    assert part.read_bytes() == b""


def _limit_file_size(limit: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.fixture
def big_video_emulator() -> Iterator[FakeKlingServer]:
    """An emulator whose videos are 2 MB: larger than the child's file-size limit."""
    threaded = ThreadedEmulator(
        api_key=API_KEY,
        timeline=Timeline(queue_seconds=0.05, processing_seconds=0.1),
        video_size=2_000_000,
    )
    try:
        yield threaded.start()
    finally:
        threaded.stop()


def run_cli(args: list[str], *, file_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COMETAPI_KEY": ""}
    if file_limit:
        # Under `make test` coverage measures child processes too, and its data file would hit
        # the same limit at exit (a traceback of its own): the limited child runs unmeasured.
        env.pop("COVERAGE_PROCESS_CONFIG", None)
    return subprocess.run(  # noqa: S603 - this interpreter, our own module
        [sys.executable, "-m", "kling_async.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_limit_file_size(file_limit) if file_limit else None,
        env=env,
    )


def test_efbig_in_a_download_stops_the_batch_cleanly(
    big_video_emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE below the video size: exit 3, the .part named with EFBIG; then a run without
    the limit finishes with the same tasks."""
    server = big_video_emulator
    prompts = prompts_file(tmp_path, 2)
    out = tmp_path / "out"
    args = [*connect(server), "batch", str(prompts), "-o", str(out)]
    limited = run_cli(args, file_limit=1_000_000)
    assert limited.returncode == EXIT_STORAGE, limited.stderr
    assert "Traceback" not in limited.stderr
    [line] = error_lines(limited.stderr)
    assert ".mp4.part: File too large (EFBIG)" in line
    assert "run again: kling-async batch" in line
    assert all(status != "downloaded" for _, status, _ in journal_rows(out / JOURNAL))
    creates = len(server.tasks)

    again = run_cli(args)
    assert again.returncode == EXIT_OK, again.stderr
    assert len(server.tasks) == creates == 2
    assert all(path.stat().st_size > 1_000_000 for path in out.glob("*.mp4"))


def test_efbig_in_the_journal_stops_the_batch_cleanly(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """A file-size limit the journal (its WAL) outgrows mid-run: exit 3 naming the journal; the
    re-run finishes every prompt with exactly one task each."""
    prompts = prompts_file(tmp_path, 12)
    out = tmp_path / "out"
    args = [*connect(emulator), "batch", str(prompts), "-o", str(out)]
    limited = run_cli(args, file_limit=96 * 1024)
    assert limited.returncode == EXIT_STORAGE, limited.stderr
    assert "Traceback" not in limited.stderr
    [line] = error_lines(limited.stderr)
    assert f"cannot write {out / JOURNAL}" in line
    assert "file-size limit (ulimit -f)" in line

    again = run_cli(args)
    assert again.returncode == EXIT_OK, again.stderr
    rows = journal_rows(out / JOURNAL)
    assert [status for _, status, _ in rows] == ["downloaded"] * 12
    assert len(emulator.tasks) == 12  # one task per prompt: nothing paid twice


def test_generate_into_an_unwritable_place_is_one_line(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """generate -o below a regular file: the task runs, the save fails with exit 3, one line
    naming the place, and no traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    target = blocker / "video.mp4"
    result = invoke([*connect(emulator), "generate", "A cat", "-o", str(target)])
    assert result.exit_code == EXIT_STORAGE, result.output
    assert "Traceback" not in result.output
    [line] = error_lines(result.output)
    assert f"cannot create {target}: {blocker} is a file, not a folder" in line
