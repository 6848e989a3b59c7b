"""What a new user meets first: the emulator's own instructions, -o out/, and fast, clear errors."""

from __future__ import annotations

import base64
import shlex
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kling_async as kling
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.testing.__main__ import DEFAULT_API_KEY, main, usage_lines

from .cli_support import API_KEY, invoke


def _connect(server: FakeKlingServer) -> list[str]:
    return ["--provider", "emulator", "--base-url", server.url, "--api-key", API_KEY]


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def emulator_process() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``python -m kling_async.testing`` with the default key; yields it and its first 5 lines."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kling_async.testing",
            "--port",
            "0",
            "--queue-seconds",
            "0",
            "--processing-seconds",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().rstrip("\n") for _ in range(5)]
        yield process, lines
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout is not None:
            process.stdout.close()


def test_the_emulator_prints_a_command_that_works_as_pasted(
    emulator_process: tuple[subprocess.Popen[str], list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """URL, CDN URL, the key, then a command line; pasted, it makes the folder out/ and says so."""
    _, lines = emulator_process
    url, cdn, key_line, intro, command = lines
    assert url.startswith("http://127.0.0.1:")
    assert cdn.startswith("http://127.0.0.1:")
    assert key_line == f"api key: {DEFAULT_API_KEY}"
    assert intro == "in another terminal:"
    words = shlex.split(command)
    assert words[0] == "kling-async"
    assert words[words.index("--base-url") + 1] == url
    assert words[words.index("--api-key") + 1] == DEFAULT_API_KEY
    assert words[-2:] == ["-o", "out/"]
    monkeypatch.chdir(tmp_path)
    result = invoke(words[1:])
    assert result.exit_code == 0, result.output
    (saved,) = (tmp_path / "out").iterdir()
    assert saved.suffix == ".mp4"
    assert f"saved {saved.resolve()}" in result.output


def test_a_key_the_user_chose_is_not_printed() -> None:
    lines = usage_lines("http://127.0.0.1:9", "sk-my-real-key")
    assert "sk-my-real-key" not in lines
    assert "api key: the --api-key you gave" in lines
    assert "--api-key KEY" in lines


def test_a_busy_port_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert "--port 0" in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "70000"], "--port: a port is 0 to 65535"),
        (["--cdn-port", "-1"], "--cdn-port: a port is 0 to 65535"),
        (["--fail-rate", "2"], "--fail-rate: must be from 0 to 1, got 2"),
        (["--queue-seconds", "nan"], "--queue-seconds: must be at least 0, got nan"),
        (["--max-active", "0"], "--max-active: must be at least 1, got 0"),
    ],
)
def test_an_impossible_emulator_option_is_an_error_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert error.splitlines()[-1].startswith(
        f"python -m kling_async.testing: error: argument {says}"
    )


def test_generate_into_a_folder_named_with_a_slash(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """``-o DIR/`` is a folder even when it does not exist yet (it used to be a file named DIR)."""
    folder = tmp_path / "videos"
    result = invoke([*_connect(emulator), "generate", "a cat", "-o", f"{folder}/"])
    assert result.exit_code == 0, result.output
    (saved,) = folder.iterdir()
    assert saved.name.endswith(".mp4")
    assert f"saved {saved}" in result.output


def test_generate_into_an_existing_folder_and_into_a_file(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    into_folder = invoke([*_connect(emulator), "generate", "a cat", "-o", str(existing)])
    assert into_folder.exit_code == 0, into_folder.output
    assert len(list(existing.glob("*.mp4"))) == 1
    target = tmp_path / "clip.mp4"
    into_file = invoke([*_connect(emulator), "generate", "a dog", "-o", str(target)])
    assert into_file.exit_code == 0, into_file.output
    assert target.is_file()


def test_missing_key_names_the_cli_option_and_the_emulator_key(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    result = invoke(["--provider", "emulator", "--base-url", emulator.url, "status", "t1"])
    assert result.exit_code == 2
    assert "pass --api-key" in result.output
    assert "api_key=" not in result.output
    assert "test-key" in result.output
    assert emulator.requests == []


def test_access_key_without_secret_names_the_cli_options() -> None:
    result = invoke(["--access-key", "ak", "status", "t1"])
    assert result.exit_code == 2
    assert "--access-key and --secret-key must be given together" in result.output


def test_nothing_listening_fails_after_two_quick_retries() -> None:
    """Connection refused: two retries (not five), then one line naming what was tried."""
    url = f"http://127.0.0.1:{_closed_port()}"
    result = invoke(
        ["--provider", "emulator", "--base-url", url, "--api-key", "k", "generate", "a cat"]
    )
    assert result.exit_code == 1
    lines = result.output.splitlines()
    retries = [line for line in lines if line.startswith("retrying ")]
    assert len(retries) == 2, result.output
    (error,) = [line for line in lines if line.startswith("error: ")]
    assert f"{url}/" in error
    assert "cannot connect" in error
    assert "is the server running, and is --base-url right?" in error
    assert "Traceback" not in result.output


def test_status_with_nothing_listening_is_one_line() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = invoke(["--provider", "emulator", "--base-url", url, "--api-key", "k", "status", "t1"])
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith(f"error: GET {url}/")


def test_refused_connections_get_fewer_retries_than_timeouts() -> None:
    policy = kling.RetryPolicy()
    refused = kling.APIConnectionError("cannot connect", maybe_sent=False)
    reset = kling.APIConnectionError("connection reset", maybe_sent=True)
    timeout = kling.APITimeoutError("connect timed out", maybe_sent=False)
    assert policy.should_retry(refused, 1)
    assert not policy.should_retry(refused, 2)
    assert policy.should_retry(reset, 4)
    assert policy.should_retry(timeout, 4)
    assert not policy.should_retry(timeout, 5)
    assert kling.RetryPolicy(max_connect_retries=4).should_retry(refused, 3)


def _png_file(path: Path, width: int, height: int) -> Path:
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    path.write_bytes(header + struct.pack(">II", width, height) + b"\x08\x02\0\0\0" + b"\0" * 40)
    return path


def test_generate_image2video_sends_a_local_image_as_base64(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """``generate --kind image2video --image ./cat.png``: the file goes as base64."""
    image = _png_file(tmp_path / "cat.png", 640, 480)
    out = tmp_path / "clip.mp4"
    args = ["generate", "The cat waves", "--kind", "image2video", "--image", str(image)]
    result = invoke([*_connect(emulator), *args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    (task,) = emulator.tasks.values()
    assert task.kind.name == "image2video"
    assert base64.b64decode(task.body["image"]) == image.read_bytes()
    assert out.read_bytes()[4:8] == b"ftyp"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--kind", "image2video"], "needs --image"),
        (["--image", "https://example.test/a.png"], "--image goes with --kind image2video"),
        (["--kind", "image2video", "--image", "missing.png"], "No such file"),
        (["--kind", "image2video", "--image", "SMALL"], "at least 300 px"),
    ],
)
def test_generate_image_mistakes_are_one_line_before_any_request(
    emulator: FakeKlingServer, tmp_path: Path, args: list[str], words: str
) -> None:
    small = _png_file(tmp_path / "small.png", 100, 100)
    args = [str(small) if arg == "SMALL" else arg for arg in args]
    result = invoke([*_connect(emulator), "generate", "x", *args, "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert words in result.output
    assert "Traceback" not in result.output
    assert emulator.requests_to("api") == []


def test_generate_refuses_a_bad_timeout_or_output_before_paying(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """A mistake in --timeout or -o is found before the task is created, not after it is paid."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args in (["--timeout", "0"], ["--timeout", "-5"], ["-o", f"{blocker}/videos/"]):
        result = invoke([*_connect(emulator), "generate", "a cat", *args])
        assert result.exit_code != 0, (args, result.output)
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) <= 4, result.output
    assert emulator.tasks == {}
    assert "a-file is a file, not a folder" in result.output


def test_a_timed_out_generate_names_a_status_command_that_finds_the_task(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """The hint repeats the kind and where the API is (never the key), so it works as pasted."""
    emulator.timeline = Timeline(queue_seconds=1e9)
    image = _png_file(tmp_path / "cat.png", 320, 320)
    args = ["generate", "waves", "--kind", "image2video", "--image", str(image)]
    result = invoke([*_connect(emulator), *args, "--timeout", "0.3", "-o", f"{tmp_path}/"])
    assert result.exit_code == 1, result.output
    (task_id,) = emulator.tasks
    hint = f"kling-async status {task_id} --kind image2video --provider emulator --base-url {emulator.url}"
    assert hint in " ".join(result.output.split()), result.output
    assert API_KEY not in result.output
    status = invoke([*shlex.split(hint.removeprefix("kling-async ")), "--api-key", API_KEY])
    assert status.exit_code == 0, status.output
    assert "submitted" in status.output
