"""Batch files: type errors in words a user understands, every problem of a row, mixed kinds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kling_async as kling
from kling_async.cli import InputError, load_items


def _problems(path: Path) -> list[str]:
    with pytest.raises(InputError) as info:
        load_items(path, kling.RequestLimits())
    return info.value.problems


def test_jsonl_type_errors_are_worded_for_the_file(tmp_path: Path) -> None:
    """A text cfg_scale used to print "'<=' not supported between instances of 'int' and 'str'"."""
    path = tmp_path / "p.jsonl"
    lines = [
        {"prompt": "a", "cfg_scale": "high"},
        {"prompt": "b", "watermark": "yes", "duration": "\uff15"},
        {"prompt": "c", "camera_control": {"type": "simple", "config": {"zoom": "5"}}},
        {"prompt": "d", "multi_shot": True, "multi_prompt": {"index": 1}},
        {"prompt": "e", "kind": "holograms"},
        {},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert _problems(path) == [
        f"{path}:1: cfg_scale: must be a number from 0 to 1, got 'high' (text)",
        f"{path}:2: duration: must be whole seconds such as '5' or '10', got '\uff15' "
        "(ASCII digits 0-9 only)",
        f"{path}:2: watermark: must be true or false, got 'yes' (text)",
        f"{path}:3: camera_control.config.zoom: must be a number from -10 to 10, got '5' (text)",
        f"{path}:4: multi_prompt: must be a list of MultiPrompt, got {{'index': 1}} (object)",
        f"{path}:5: kind: must be one of {', '.join(sorted(kling.KINDS))}, got 'holograms'",
        f"{path}:6: prompt: is required (and must not be blank)",
    ]


def test_csv_reports_every_problem_of_a_row(tmp_path: Path) -> None:
    """An unreadable cell, two wrong fields and a model rule: four lines for one row."""
    path = tmp_path / "p.csv"
    path.write_text(
        "key,prompt,model_name,duration,cfg_scale,watermark,mode\n"
        "a,A cat,kling-v1,²,lots,maybe,std\n"
        "b,A dog,kling-v2-master,7,0.5,,pro\n"
    )
    assert _problems(path) == [
        f"{path}:2: cfg_scale: expected a number, got 'lots'",
        f"{path}:2: watermark: expected true or false, got 'maybe'",
        f"{path}:2: duration: must be whole seconds such as '5' or '10', got '²' "
        "(ASCII digits 0-9 only)",
        *(
            f"{path}:3: {field}: {message} [rule '{rule}'; the documentation may be behind the "
            f"API: to send it anyway, pass relax_rules={{'{rule}'}} on the request or in "
            "RequestLimits]"
            for field, message, rule in [
                ("mode", "kling-v2-master takes no mode, got 'pro'", "mode"),
                ("duration", "kling-v2-master takes '5', '10', got '7'", "duration"),
                ("cfg_scale", "kling-v2-master does not take cfg_scale", "cfg-scale"),
            ]
        ),
    ]


def test_one_file_mixes_kinds(tmp_path: Path) -> None:
    """A kind column (or field) picks the request type per row."""
    path = tmp_path / "p.csv"
    path.write_text(
        "key,kind,prompt,image,relax_rules\n"
        "t,,A cat,,\n"
        "i,image2video,It waves,https://cdn.test/cat.png,\n"
    )
    (t_key, text), (i_key, image) = load_items(path, kling.RequestLimits())
    assert (t_key, type(text)) == ("t", kling.TextToVideo)
    assert (i_key, type(image)) == ("i", kling.ImageToVideo)
    assert image.image == "https://cdn.test/cat.png"  # type: ignore[union-attr]


def test_deeply_nested_json_line_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """5,000 nested brackets make json.loads recurse too deep: reported as bad JSON."""
    path = tmp_path / "p.jsonl"
    path.write_text("[" * 5000 + "\n" + json.dumps({"prompt": "fine"}) + "\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:1: not valid JSON")


def test_csv_cells_of_other_kinds(tmp_path: Path) -> None:
    """Numbers, flags and nested JSON of every kind's fields are read from CSV cells."""
    path = tmp_path / "p.csv"
    path.write_text(
        "key,kind,prompt,n,image_fidelity,duration,input,effect_scene,video_id,asmr_mode\n"
        "g,image-generation,A fox,2,0.5,,,,,\n"
        "a,text-to-audio,Rain,,,4.5,,,,\n"
        'e,effects,,,,,"{""image"": ""https://cdn.test/a.png""}",hug,,\n'
        "v,video-to-audio,,,,,,,v-1,yes\n"
    )
    items = dict(load_items(path, kling.RequestLimits()))
    assert items["g"] == kling.ImageGeneration(prompt="A fox", n=2, image_fidelity=0.5)
    assert items["a"] == kling.TextToAudio(prompt="Rain", duration=4.5)
    assert items["e"] == kling.VideoEffects(
        effect_scene="hug", input={"image": "https://cdn.test/a.png"}
    )
    assert items["v"] == kling.VideoToAudio(video_id="v-1", asmr_mode=True)
