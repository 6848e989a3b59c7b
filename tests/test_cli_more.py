"""The kling-async command: input edge cases, refusals, timeouts, Ctrl-C, status, emulator, demo."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import IO, Any

import pytest
from rich.console import Console

import kling_async as kling
import kling_async.cli
import kling_async.testing
import kling_async.testing.__main__
from kling_async.cli import InputError, load_items, main
from kling_async.events import Event, TaskSubmitted
from kling_async.journal import JournalEntry
from kling_async.progress import PlainBatchProgress, PlainTaskProgress
from kling_async.testing import FakeKlingServer, Timeline

from .cli_support import API_KEY, invoke

SLOW = Timeline(queue_seconds=3600, processing_seconds=3600)


def _connect(server: FakeKlingServer, api_key: str = API_KEY) -> list[str]:
    return ["--provider", "emulator", "--base-url", server.url, "--api-key", api_key]


def _problems(path: Path) -> list[str]:
    with pytest.raises(InputError) as info:
        load_items(path, kling.RequestLimits())
    return info.value.problems


# -- input files ------------------------------------------------------------------------------


def test_load_items_jsonl_multi_shot_and_bad_keys(tmp_path: Path) -> None:
    """Shots become MultiPrompt objects; non-string keys and unknown camera fields are lines."""
    path = tmp_path / "p.jsonl"
    shots = [{"index": 1, "prompt": "a door opens", "duration": 3}, {"index": 2, "prompt": "in"}]
    shots[1]["duration"] = 2
    lines = [
        {"key": "shots", "prompt": "two shots", "multi_shot": True, "multi_prompt": shots},
        {"key": 7, "prompt": "numeric key"},
        {"key": "  ", "prompt": "blank key"},
        {"prompt": "zoom", "camera_control": {"type": "simple", "config": {}, "speed": 2}},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert _problems(path) == [
        f"{path}:2: key must be a non-empty string",
        f"{path}:3: key must be a non-empty string",
        f"{path}:4: camera_control: unknown field(s): speed; accepted: type, config",
    ]
    path.write_text(json.dumps(lines[0]) + "\n")
    ((key, request),) = load_items(path, kling.RequestLimits())
    assert key == "shots"
    assert request.multi_prompt == (
        kling.MultiPrompt(index=1, prompt="a door opens", duration="3"),
        kling.MultiPrompt(index=2, prompt="in", duration="2"),
    )


def test_load_items_csv_cells_are_checked(tmp_path: Path) -> None:
    """CSV: false-y booleans, bad booleans, bad JSON and extra cells, each with its line."""
    path = tmp_path / "p.csv"
    path.write_text(
        "key,prompt,watermark,camera_control\n"
        "a,A cat,no,\n"
        ",,,\n"
        "b,A dog,maybe,\n"
        'c,A bird,,"{not json"\n'
        "d,A fish,off,,surplus\n"
    )
    assert _problems(path) == [
        f"{path}:4: watermark: expected true or false, got 'maybe'",
        f"{path}:5: camera_control: not valid JSON "
        "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        f"{path}:6: more cells than header columns",
    ]
    path.write_text("\n".join(path.read_text().splitlines()[:3]) + "\n")
    ((key, request),) = load_items(path, kling.RequestLimits())
    assert (key, request.prompt, request.watermark) == ("a", "A cat", False)


@pytest.mark.parametrize(
    ("name", "text"),
    [("p.txt", "\n   \n"), ("p.jsonl", "\n"), ("p.csv", ""), ("p.csv", "key,prompt\n")],
)
def test_load_items_without_prompts_is_an_error(tmp_path: Path, name: str, text: str) -> None:
    """A file with nothing to submit is reported, not run as an empty batch."""
    path = tmp_path / name
    path.write_text(text)
    assert _problems(path) == [f"{path}: no prompts found"]


# -- usage errors: nothing is sent ------------------------------------------------------------


def test_batch_input_that_is_not_utf8_is_a_usage_error(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """A binary or wrongly encoded prompts file: exit 2 naming the file, nothing sent."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"caf\xe9 au lait\n")
    result = invoke([*_connect(emulator), "batch", str(prompts), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert f"cannot read {prompts}" in result.output
    assert emulator.requests == []


def test_batch_output_folder_that_cannot_be_made_is_a_storage_error(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """-o below a regular file: exit 3 (storage) naming the folder, nothing sent."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = blocker / "out"
    result = invoke([*_connect(emulator), "batch", str(prompts), "-o", str(out)])
    assert result.exit_code == 3
    assert f"cannot create {out}: Not a directory (ENOTDIR)" in result.output
    assert emulator.requests == []


def test_emulator_base_url_must_be_http(tmp_path: Path) -> None:
    """A base URL without a scheme is refused before anything connects."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    connect = ["--provider", "emulator", "--base-url", "localhost:8765", "--api-key", API_KEY]
    result = invoke([*connect, "batch", str(prompts), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "--base-url must start with http:// or https://: localhost:8765" in result.output


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        ("20", "duration: must be at most 15s"),
        ("five", "duration: must be whole seconds such as '5' or '10', got 'five'"),
    ],
)
def test_generate_refuses_a_bad_request_before_sending(
    emulator: FakeKlingServer, duration: str, message: str
) -> None:
    """A duration the provider does not offer, or no number at all: exit 2, nothing sent."""
    result = invoke([*_connect(emulator), "generate", "a cat", "--duration", duration])
    assert result.exit_code == 2
    assert message in result.output
    assert emulator.requests == []


def test_changed_prompts_are_refused_on_rerun(emulator: FakeKlingServer, tmp_path: Path) -> None:
    """Editing a line and re-running into the same folder: exit 2, no new task is paid for."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n")
    args = [*_connect(emulator), "batch", str(prompts), "-o", str(tmp_path / "out")]
    assert invoke(args).exit_code == 0
    prompts.write_text("a dog\n")
    result = invoke(args)
    assert result.exit_code == 2
    assert "the journal already has 'line-0001' with a different request" in result.output
    assert emulator.stats.routes["create"] == 1


# -- refusals, timeouts, interrupts -----------------------------------------------------------


def test_refused_key_exits_1_with_the_server_message(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """A key the server refuses: exit 1 with its message; the key itself is never printed."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\n")
    wrong = "sk-wrong-key-0123456789"
    result = invoke([*_connect(emulator, wrong), "batch", str(prompts), "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert "error: Authorization is invalid (HTTP 401, code 1002" in result.output
    assert wrong not in result.output
    assert emulator.create_counts == {}


def test_batch_timeout_reports_unfinished_and_the_rerun_finishes(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """At --timeout the summary says what is unfinished and how to go on; the re-run does."""
    emulator.timeline = SLOW
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\n")
    args = [*_connect(emulator), "batch", str(prompts), "-o", str(tmp_path / "out")]
    first = invoke([*args, "--timeout", "0.3"])
    assert first.exit_code == 1, first.output
    assert "0 succeeded, 0 failed, 0 uncertain, 2 unfinished" in first.output
    assert "run the same command again to continue" in first.output
    assert emulator.stats.routes["create"] == 2

    for task_id in list(emulator.tasks):
        emulator.set_status(task_id, "succeed")
    second = invoke(args)
    assert second.exit_code == 0, second.output
    assert "2 succeeded, 0 failed, 0 uncertain, 0 unfinished" in second.output
    assert "run the same command again" not in second.output
    assert emulator.stats.routes["create"] == 2


def test_generate_timeout_says_how_to_check_later(emulator: FakeKlingServer) -> None:
    """A task still running at --timeout: exit 1 with the status command to run; it works."""
    emulator.timeline = SLOW
    result = invoke([*_connect(emulator), "generate", "a slow cat", "--timeout", "0.2"])
    assert result.exit_code == 1
    (task_id,) = emulator.tasks
    assert f"task {task_id} is still running; check it with: kling-async status {task_id}" in (
        result.output
    )
    shown = invoke([*_connect(emulator), "status", task_id])
    assert shown.exit_code == 0
    assert "status:   submitted" in shown.output
    assert "video:" not in shown.output


class _InterruptOnCreate(PlainBatchProgress):
    """A plain display that presses Ctrl-C as soon as the first task is created."""

    def entry(self, entry: JournalEntry) -> None:
        super().entry(entry)
        if entry.status == "created":
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_exits_130_and_the_rerun_resumes(
    emulator: FakeKlingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted after a create: exit 130 with the resume hint; the re-run pays nothing twice."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("asyncio.run turns SIGINT into a cancellation only over the default handler")
    emulator.timeline = SLOW

    def interrupting(console: Console, total: int, **_: object) -> PlainBatchProgress:
        stream: IO[str] = console.file
        return _InterruptOnCreate(stream, total)

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n")
    args = [*_connect(emulator), "batch", str(prompts), "-o", str(tmp_path / "out")]
    with monkeypatch.context() as patch:
        patch.setattr(kling_async.cli, "batch_display", interrupting)
        first = invoke(args)
    assert first.exit_code == 130
    assert "interrupted; run the same command again to resume" in first.output
    (task_id,) = emulator.tasks

    emulator.set_status(task_id, "succeed")
    second = invoke(args)
    assert second.exit_code == 0, second.output
    assert "1 succeeded" in second.output
    assert emulator.stats.routes["create"] == 1


class _InterruptOnSubmit(PlainTaskProgress):
    """A plain task display that presses Ctrl-C as soon as the task is created."""

    def event(self, event: Event) -> None:
        super().event(event)
        if isinstance(event, TaskSubmitted):
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_during_generate_names_the_running_task(
    emulator: FakeKlingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """generate keeps no journal: Ctrl-C says which task keeps running, not "run it again"."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("asyncio.run turns SIGINT into a cancellation only over the default handler")
    emulator.timeline = SLOW

    def interrupting(console: Console, title: str) -> PlainTaskProgress:
        stream: IO[str] = console.file
        return _InterruptOnSubmit(stream)

    with monkeypatch.context() as patch:
        patch.setattr(kling_async.cli, "task_display", interrupting)
        result = invoke([*_connect(emulator), "generate", "a cat"])
    assert result.exit_code == 130
    (task_id,) = emulator.tasks
    assert f"task {task_id} keeps running" in result.output
    assert f"kling-async status {task_id}" in result.output
    assert "run the same command again" not in result.output


def test_verbose_lets_library_logs_through(
    emulator: FakeKlingServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """-v logs retries; without it the library is quiet (its warnings would tear the display)."""
    caplog.set_level(logging.INFO)

    def library_messages() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name.startswith("kling_async")]

    args = [*_connect(emulator), "generate", "a cat", "-o", str(tmp_path)]
    emulator.faults.next_query("503")
    emulator.faults.next_list("503")
    loud = invoke(["-v", *args])
    assert loud.exit_code == 0, loud.output
    assert any("failed (ServerError); retry 1 in" in message for message in library_messages())

    caplog.clear()
    emulator.faults.clear()
    emulator.faults.next_query("503")
    emulator.faults.next_list("503")
    quiet = invoke(args)
    assert quiet.exit_code == 0, quiet.output
    assert "retrying GET " in quiet.output  # the display still shows it
    assert library_messages() == []


# -- status -----------------------------------------------------------------------------------


def test_status_of_a_failed_task_shows_its_reason(emulator: FakeKlingServer) -> None:
    """status shows the server's message and external id, and no video for a failed task."""
    assert invoke([*_connect(emulator), "generate", "please FAIL"]).exit_code == 1
    ((task_id, task),) = emulator.tasks.items()
    result = invoke([*_connect(emulator), "status", task_id])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "status:   failed" in lines
    assert "message:  content risk control" in lines
    assert f"external: {task.external_task_id}" in lines
    assert any(line.startswith("created:  20") for line in lines)
    assert not any(line.startswith("video:") for line in lines)


# -- emulator, demo, entry point --------------------------------------------------------------


def test_emulator_command_passes_options_and_the_global_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The emulator gets --port, its own options, and the global --api-key unless given one."""
    calls: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        calls.append(list(argv))
        return 0

    monkeypatch.setattr(kling_async.testing.__main__, "main", fake_main)
    first = invoke(["--api-key", "sk-shared", "emulator", "--port", "0", "--fail-rate", "0.1"])
    second = invoke(["--api-key", "sk-shared", "emulator", "--api-key", "sk-own"])
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert calls == [
        ["--port", "0", "--fail-rate", "0.1", "--api-key", "sk-shared"],
        ["--port", "8765", "--api-key", "sk-own"],
    ]


def _quick_demo_timeline(monkeypatch: pytest.MonkeyPatch) -> None:
    real_timeline = kling_async.testing.Timeline

    def quick(**options: Any) -> Timeline:
        # The demo's realistic seconds, compressed: every other setting is kept.
        options.update(queue_seconds=0.05, processing_seconds=0.1, fail_rate=0.0)
        return real_timeline(**options)

    monkeypatch.setattr(kling_async.testing, "Timeline", quick)


def test_demo_runs_a_batch_against_a_private_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """demo exits 0 with a summary even though its FAIL prompt fails, and saves the videos."""
    _quick_demo_timeline(monkeypatch)
    out = tmp_path / "demo"
    result = invoke(["demo", "--count", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "emulator on http://127.0.0.1:" in result.output
    assert "(kling dialect)" in result.output
    assert "2 prompts, 5 task slots" in result.output
    assert "failed demo-02: content risk control" in result.output
    assert "1 succeeded, 1 failed, 0 uncertain, 0 unfinished" in result.output
    assert f"videos: {out.resolve()}" in result.output
    assert sorted(path.name for path in out.glob("*.mp4")) == ["demo-01.mp4"]


def test_main_runs_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    """The console script's entry point names itself kling-async and lists the commands."""
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith("Usage: kling-async [OPTIONS] COMMAND")
    for command in ("batch", "demo", "emulator", "generate", "status"):
        assert f"  {command} " in shown


def test_demo_runs_behind_the_new_api_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``demo --dialect new-api``: the same batch through the emulated gateway, no setting."""
    _quick_demo_timeline(monkeypatch)
    out = tmp_path / "demo"
    result = invoke(["demo", "--count", "3", "--out", str(out), "--dialect", "new-api"])
    assert result.exit_code == 0, result.output
    assert "(new-api dialect)" in result.output
    assert "failed demo-02: content risk control" in result.output
    # The demo's faults may leave a create "uncertain" behind the gateway; never a duplicate.
    assert {path.name for path in out.glob("*.mp4")} <= {"demo-01.mp4", "demo-03.mp4"}
    assert " 0 unfinished" in result.output
