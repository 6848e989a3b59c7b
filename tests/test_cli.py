"""The kling-async command: input validation, credentials, batches, generate and status."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import kling_async as kling
from kling_async.cli import InputError, load_items
from kling_async.testing import FakeKlingServer

from .cli_support import API_KEY, invoke


def _connect(server: FakeKlingServer) -> list[str]:
    return ["--provider", "emulator", "--base-url", server.url, "--api-key", API_KEY]


# -- input files ------------------------------------------------------------------------------


def test_bad_jsonl_lines_are_all_reported_and_nothing_is_sent(
    emulator: FakeKlingServer, tmp_path: Path
) -> None:
    """Every bad line is reported as file:line with exit code 2, before any request."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "\n".join(
            [
                json.dumps({"prompt": "a good one"}),
                "{not json",
                json.dumps({"prompt": "bad mode", "mode": "standard"}),
                "",
                json.dumps({"prompt": "x" * 501}),
                json.dumps({"prompt": "typo", "durration": "5"}),
                json.dumps(["not", "an", "object"]),
            ]
        )
        + "\n"
    )
    result = invoke([*_connect(emulator), "batch", str(prompts), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    for line in (2, 3, 5, 6, 7):
        assert f"{prompts}:{line}: " in result.output
    assert f"{prompts}:1:" not in result.output
    assert "mode" in result.output
    assert "durration" in result.output
    assert "nothing was submitted" in result.output
    assert emulator.requests == []


def test_missing_key_is_a_usage_error(tmp_path: Path) -> None:
    """No key anywhere: exit 2 naming the environment variable."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    result = invoke(["batch", str(prompts), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "COMETAPI_KEY" in result.output


def test_unreadable_input_file_is_a_usage_error(tmp_path: Path) -> None:
    """A missing prompts file: exit 2 with the path."""
    result = invoke(["--api-key", API_KEY, "batch", str(tmp_path / "nope.txt"), "-o", "x"])
    assert result.exit_code == 2
    assert "nope.txt" in result.output


def test_emulator_provider_needs_a_base_url(tmp_path: Path) -> None:
    """--provider emulator without a URL says so."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    result = invoke(
        ["--provider", "emulator", "--api-key", "k", "batch", str(prompts), "-o", "out"]
    )
    assert result.exit_code == 2
    assert "--base-url" in result.output


def test_load_items_txt_keys_follow_line_numbers(tmp_path: Path) -> None:
    """Blank lines are skipped; keys come from physical line numbers, so they stay stable."""
    path = tmp_path / "p.txt"
    path.write_text("first\n\n  second  \n")
    items = load_items(path, kling.RequestLimits())
    assert [(key, request.prompt) for key, request in items] == [
        ("line-0001", "first"),
        ("line-0003", "second"),
    ]


def test_load_items_jsonl_nested_fields_and_keys(tmp_path: Path) -> None:
    """JSONL lines carry any TextToVideo field, camera_control nested, and optional keys."""
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps(
            {
                "key": "zoom",
                "prompt": "a zoom",
                "duration": 10,
                "mode": "pro",
                "camera_control": {"type": "simple", "config": {"zoom": 5}},
            }
        )
        + "\n"
        + json.dumps({"prompt": "plain", "aspect_ratio": "9:16"})
        + "\n"
    )
    (key, first), (second_key, second) = load_items(path, kling.RequestLimits())
    assert key == "zoom"
    assert first.duration == "10"
    assert first.camera_control == kling.CameraControl(
        type="simple", config=kling.CameraConfig(zoom=5)
    )
    assert (second_key, second.aspect_ratio) == ("line-0002", "9:16")


def test_load_items_csv(tmp_path: Path) -> None:
    """CSV: a header of field names; numbers, booleans and JSON cells are converted."""
    path = tmp_path / "p.csv"
    path.write_text(
        "key,prompt,duration,cfg_scale,watermark,camera_control\n"
        'a,"A cat, sleeping",5,0.5,true,\n'
        'b,A dog,10,,,"{""type"": ""forward_up""}"\n'
        "c,Bad,5,lots,,\n"
    )
    with pytest.raises(InputError) as info:
        load_items(path, kling.RequestLimits())
    assert info.value.problems == [f"{path}:4: cfg_scale: expected a number, got 'lots'"]
    path.write_text("\n".join(path.read_text().splitlines()[:3]) + "\n")
    (a_key, a), (b_key, b) = load_items(path, kling.RequestLimits())
    assert (a_key, a.prompt, a.cfg_scale, a.watermark) == ("a", "A cat, sleeping", 0.5, True)
    assert (b_key, b.duration, b.camera_control) == ("b", "10", kling.CameraControl("forward_up"))


def test_load_items_reports_duplicate_keys(tmp_path: Path) -> None:
    """Two lines with the same key cannot share a journal entry."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"key": "k", "prompt": "a"}\n{"key": "k", "prompt": "b"}\n')
    with pytest.raises(InputError, match=r"p\.jsonl:2: duplicate key 'k'"):
        load_items(path, kling.RequestLimits())


# -- running against the emulator -------------------------------------------------------------


def _journal_rows(path: Path) -> list[tuple[str, str, str]]:
    connection = sqlite3.connect(path)
    try:
        return list(connection.execute("SELECT key, task_id, status FROM kling_journal_entries"))
    finally:
        connection.close()


def test_batch_end_to_end_plain_output_and_rerun(emulator: FakeKlingServer, tmp_path: Path) -> None:
    """Five prompts: plain log lines (no ANSI), a summary, files, and a re-run that sends nothing."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"prompt number {n}\n" for n in range(5)))
    out = tmp_path / "out"
    args = [*_connect(emulator), "batch", str(prompts), "-o", str(out), "--max-active", "3"]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.output
    assert API_KEY not in result.output
    for n in range(1, 6):
        key = f"line-{n:04d}"
        assert f"created {key} task " in result.output
        assert f"downloaded {key} -> " in result.output
        assert (out / f"{key}.mp4").read_bytes()[4:8] == b"ftyp"
    assert "Batch summary" in result.output
    assert "5 succeeded, 0 failed, 0 uncertain, 0 unfinished" in result.output
    rows = _journal_rows(out / ".kling-journal.sqlite3")
    assert {status for _, _, status in rows} == {"downloaded"}
    assert emulator.stats.routes["create"] == 5

    again = invoke(args)
    assert again.exit_code == 0, again.output
    assert "created line-" not in again.output
    assert emulator.stats.routes["create"] == 5


def test_batch_exits_1_when_a_task_fails(emulator: FakeKlingServer, tmp_path: Path) -> None:
    """A failed task makes the batch exit 1 and shows its reason."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"key": "ok", "prompt": "fine"}\n{"key": "bad", "prompt": "FAIL me"}\n')
    journal = tmp_path / "elsewhere.sqlite3"
    result = invoke(
        [
            "batch",
            str(prompts),
            "-o",
            str(tmp_path / "out"),
            "--journal",
            str(journal),
            *_connect(emulator),
        ]
    )
    assert result.exit_code == 1, result.output
    assert "failed bad: content risk control" in result.output
    assert "1 succeeded, 1 failed" in result.output
    assert journal.exists()


def test_generate_and_status(emulator: FakeKlingServer, tmp_path: Path) -> None:
    """generate saves one MP4; status prints the task with its video URL."""
    target = tmp_path / "clip.mp4"
    result = invoke(
        [*_connect(emulator), "generate", "a lighthouse", "--mode", "pro", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[4:8] == b"ftyp"
    assert "\x1b[" not in result.output
    (task_id,) = emulator.tasks
    assert emulator.tasks[task_id].body["mode"] == "pro"

    shown = invoke([*_connect(emulator), "status", task_id])
    assert shown.exit_code == 0, shown.output
    assert f"task:     {task_id}" in shown.output
    assert "status:   succeed" in shown.output
    assert f"video:    {emulator.cdn_url}" in shown.output

    missing = invoke([*_connect(emulator), "status", "123456"])
    assert missing.exit_code == 1
    assert "no such task" in missing.output


def test_generate_reports_a_failed_task(emulator: FakeKlingServer, tmp_path: Path) -> None:
    """A failed generation exits 1 with the server's reason."""
    result = invoke([*_connect(emulator), "generate", "FAIL", "-o", str(tmp_path / "x.mp4")])
    assert result.exit_code == 1
    assert "content risk control" in result.output
