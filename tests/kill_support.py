"""What the kill -9 tests share: an emulator process, its task list, and the final file checks.

``test_kill9`` (one batch process, SQLite journal) and ``test_workers_kill`` (several workers,
PostgreSQL journal) kill the CLI mid-batch against the same emulator and end with the same
proof: one task per prompt on the emulator and one complete MP4 per prompt on disk.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FAULTY_EMULATOR = (
    "--queue-seconds",
    "0.1",
    "--processing-seconds",
    "0.4",
    "--max-active",
    "20",
    "--fault-rate",
    "0.05",
    # Every create is recorded, then answered 0.2 s later: the window a kill must hit.
    "--create-answer-delay",
    "0.2",
)
"""Compressed timings, 20 task slots, 5% random faults, and creates answered late."""


@contextlib.contextmanager
def emulator_process(api_key: str, *options: str) -> Iterator[str]:
    """``python -m kling_async.testing`` on a free port with *options*; yields its API URL."""
    process = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
        [
            sys.executable,
            "-m",
            "kling_async.testing",
            "--port",
            "0",
            "--api-key",
            api_key,
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"emulator did not start: {url!r}"
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def emulator_tasks(url: str, api_key: str, *, attempts: int) -> list[dict[str, Any]]:
    """Every task on the emulator, retrying through its random faults."""
    # No proxy: the emulator is on 127.0.0.1 and nothing may leave this machine.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(  # noqa: S310 - the emulator's http://127.0.0.1 URL
        f"{url}/kling/v1/videos/text2video?pageNum=1&pageSize=500",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    last: Exception | None = None
    for _ in range(attempts):
        try:
            with opener.open(request, timeout=10) as response:
                payload = json.loads(response.read())
            if isinstance(payload, dict) and isinstance(payload.get("data"), list):
                return list(payload["data"])
            last = ValueError(f"unexpected answer {str(payload)[:200]}")
        except urllib.error.HTTPError as exc:
            # An HTTPError holds the response's socket open until closed; left to the garbage
            # collector it becomes a ResourceWarning, which this suite treats as an error.
            exc.close()
            last = exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"could not list the emulator's tasks: {last}")


def one_task_per_prompt(
    tasks: list[dict[str, Any]], prompts: int
) -> tuple[Counter[Any], dict[Any, Any]]:
    """Check that *prompts* tasks exist, none created twice; their counts and ids by external id."""
    external_ids = Counter(task["task_info"].get("external_task_id") for task in tasks)
    assert len(tasks) == prompts, f"{len(tasks)} tasks for {prompts} prompts"
    assert max(external_ids.values()) == 1, "an external_task_id was created twice"
    by_external = {task["task_info"]["external_task_id"]: task["task_id"] for task in tasks}
    return external_ids, by_external


def assert_complete_mp4(out: Path, key: str, file_path: str | None) -> None:
    """The journal's file for *key* is ``out/<key>.mp4`` and holds an MP4."""
    path = out / f"{key}.mp4"
    assert file_path is not None
    assert Path(file_path) == path.resolve()
    data = path.read_bytes()
    assert len(data) > 8, f"{key}: empty file"
    assert data[4:8] == b"ftyp", f"{key}: not an MP4"


def assert_only_these_files(out: Path, keys: list[str]) -> None:
    """*out* holds one MP4 per key and no partial download."""
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(f"{key}.mp4" for key in keys)
    assert list(out.glob("*.part")) == []
