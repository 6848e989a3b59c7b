"""Every request field is checked for type and range when the request is built (issue 14, item 3).

Each case here was let through, or raised a foreign error, before construction-time checks.
"""

from __future__ import annotations

from typing import Any

import pytest

import kling_async as kling
from kling_async import wire
from kling_async.kinds import build_request, request_problems
from kling_async.models import DynamicMask, Element, MultiPrompt, TrajectoryPoint, Voice

IMAGE = "https://cdn.test/cat.png"


@pytest.mark.parametrize(
    "bad",
    ["\u00b2", "\uff15", "\u0665", "\u0967\u0966", "5s", "-5", "5.0", "", " ", "1e3", 5.0, True],
)
def test_duration_takes_ascii_digits_only(bad: object) -> None:
    """Superscript, full-width and other scripts' digits pass isdigit() but not the wire."""
    with pytest.raises(kling.ValidationError) as info:
        kling.TextToVideo(prompt="x", duration=bad)  # type: ignore[arg-type]
    assert info.value.field == "duration"
    assert "whole seconds" in info.value.reason


@pytest.mark.parametrize(("given", "sent"), [("05", "5"), (" 10 ", "10"), (7, "7"), ("0010", "10")])
def test_duration_is_normalised(given: object, sent: str) -> None:
    """Leading zeros and spaces go; an int becomes its string."""
    request = kling.TextToVideo(prompt="x", duration=given)  # type: ignore[arg-type]
    assert wire.request_body(request)["duration"] == sent


@pytest.mark.parametrize("bad", ["0.5", "high", True, False, float("nan"), float("inf"), -0.1, 2])
def test_cfg_scale_is_a_finite_number_in_range(bad: object) -> None:
    """Strings, booleans, NaN and infinities are refused, naming the field and the range."""
    with pytest.raises(kling.ValidationError, match=r"^cfg_scale: .*0 to 1") as info:
        kling.TextToVideo(prompt="x", cfg_scale=bad)  # type: ignore[arg-type]
    assert info.value.field == "cfg_scale"


def test_cfg_scale_takes_ints_and_floats() -> None:
    """0 and 1 are numbers too."""
    assert kling.TextToVideo(prompt="x", cfg_scale=1).cfg_scale == 1
    assert kling.TextToVideo(prompt="x", cfg_scale=0.25).cfg_scale == 0.25


@pytest.mark.parametrize("field", ["watermark", "multi_shot"])
@pytest.mark.parametrize("bad", ["yes", 1, 0, "true", float("nan")])
def test_flags_are_booleans(field: str, bad: Any) -> None:
    """'yes', 1 and NaN used to be sent as they were."""
    with pytest.raises(kling.ValidationError, match="must be true or false") as info:
        kling.TextToVideo(prompt="x", **{field: bad})
    assert info.value.field == field


def test_watermark_reaches_the_wire_as_watermark_info() -> None:
    """The typed flag still becomes watermark_info."""
    body = wire.request_body(kling.TextToVideo(prompt="x", watermark=False))
    assert body["watermark_info"] == {"enabled": False}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"mode": "standard"}, "mode", "'std', 'pro', '4k'"),
        ({"mode": 1}, "mode", "(number)"),
        ({"sound": True}, "sound", "'on', 'off'"),
        ({"shot_type": "auto"}, "shot_type", "'customize', 'intelligence'"),
        ({"prompt": 5}, "prompt", "must be a string, got 5 (number)"),
        ({"negative_prompt": ["a"]}, "negative_prompt", "(list)"),
        ({"model_name": None, "aspect_ratio": 16}, "aspect_ratio", "string"),
        ({"callback_url": b"https://x"}, "callback_url", "bytes"),
        ({"external_task_id": 12}, "external_task_id", "string"),
        ({"relax_rules": "duration"}, "relax_rules", "set of rule names"),
        ({"relax_rules": {1}}, "relax_rules", "strings"),
    ],
)
def test_text_fields_and_enums_name_what_they_accept(
    fields: dict[str, Any], field: str, words: str
) -> None:
    """The error names the field and the accepted values, in words a JSON author knows."""
    with pytest.raises(kling.ValidationError) as info:
        kling.TextToVideo(**{"prompt": "x", **fields})
    assert info.value.field == field
    assert words in str(info.value)


def test_camera_control_takes_dicts() -> None:
    """A dict-shaped camera_control (and config) is converted, not an AttributeError."""
    request = kling.TextToVideo(
        prompt="x", camera_control={"type": "simple", "config": {"zoom": 5}}
    )
    assert request.camera_control == kling.CameraControl(
        type="simple", config=kling.CameraConfig(zoom=5)
    )
    assert kling.CameraControl(type="simple", config={"zoom": 5}).config == kling.CameraConfig(
        zoom=5
    )
    assert wire.request_body(request)["camera_control"]["config"]["zoom"] == 5


@pytest.mark.parametrize(
    ("camera", "field", "words"),
    [
        ({"type": "simple", "config": {"zoom": "5"}}, "camera_control.config.zoom", "(text)"),
        ({"type": "simple", "config": {"zoom": True}}, "camera_control.config.zoom", "number"),
        (
            {"type": "simple", "config": {"zoom": float("nan")}},
            "camera_control.config.zoom",
            "-10 to 10",
        ),
        ({"type": "simple", "config": {"speed": 1}}, "camera_control.config", "speed"),
        ({"type": "simple", "config": [5]}, "camera_control.config", "CameraConfig"),
        ({"config": {"zoom": 5}}, "camera_control", "missing field(s) type"),
        ({"type": 3}, "camera_control.type", "'simple'"),
        ("zoom", "camera_control", "must be a CameraControl"),
        (["simple"], "camera_control", "(list)"),
    ],
)
def test_bad_camera_control_names_the_path(camera: object, field: str, words: str) -> None:
    """Nested mistakes are reported with their full path."""
    with pytest.raises(kling.ValidationError) as info:
        kling.TextToVideo(prompt="x", camera_control=camera)  # type: ignore[arg-type]
    assert info.value.field == field
    assert words in info.value.reason


def test_multi_prompt_takes_dicts_and_checks_each_shot() -> None:
    """Shots may be dicts; each field of each shot is checked, with its position."""
    request = kling.TextToVideo(
        multi_shot=True,
        shot_type="customize",
        duration=5,
        multi_prompt=[
            {"index": 1, "prompt": "a", "duration": "02"},
            {"index": 2, "prompt": "b", "duration": 3},
        ],
    )
    assert request.multi_prompt == (
        MultiPrompt(index=1, prompt="a", duration="2"),
        MultiPrompt(index=2, prompt="b", duration="3"),
    )
    cases: list[tuple[object, str]] = [
        ([{"index": 1, "prompt": "a", "duration": "²"}], "multi_prompt[0].duration"),
        ([{"index": True, "prompt": "a", "duration": "5"}], "multi_prompt[0].index"),
        ([{"index": 0, "prompt": "a", "duration": "5"}], "multi_prompt[0].index"),
        ([{"index": 1, "prompt": " ", "duration": "5"}], "multi_prompt[0].prompt"),
        ([{"index": 1, "prompt": "a"}], "multi_prompt[0]"),
        (["a shot"], "multi_prompt[0]"),
        ({"index": 1}, "multi_prompt"),
        ("shots", "multi_prompt"),
        ([{"index": 1, "prompt": "a", "duration": "5"}] * 7, "multi_prompt"),
        ([], "multi_prompt"),
        ([{"index": 1, "prompt": "a", "duration": "1"}] * 2, "multi_prompt"),
    ]
    for shots, field in cases:
        with pytest.raises(kling.ValidationError) as info:
            kling.TextToVideo(multi_shot=True, shot_type="customize", multi_prompt=shots)  # type: ignore[arg-type]
        assert info.value.field == field, shots


def test_multi_prompt_needs_multi_shot() -> None:
    """Shots without multi_shot=True are a mistake."""
    with pytest.raises(kling.ValidationError, match="needs multi_shot=True"):
        kling.TextToVideo(prompt="x", multi_prompt=[MultiPrompt(index=1, prompt="a", duration=5)])


def test_image_to_video_nested_lists_take_dicts() -> None:
    """Masks, voices and elements are typed, and take the JSON shapes."""
    request = kling.ImageToVideo(
        image=IMAGE,
        dynamic_masks=[{"mask": IMAGE, "trajectories": [{"x": 1, "y": 2}, {"x": "3", "y": 4}]}],
        voice_list=[{"voice_id": "v1"}],
        element_list=[{"element_id": 12}],
    )
    assert request.dynamic_masks == (
        DynamicMask(mask=IMAGE, trajectories=(TrajectoryPoint(1, 2), TrajectoryPoint(3, 4))),
    )
    assert request.voice_list == (Voice("v1"),)
    assert request.element_list == (Element("12"),)
    body = wire.request_body(request)
    assert body["dynamic_masks"][0]["trajectories"][1] == {"x": 3, "y": 4}
    assert body["voice_list"] == [{"voice_id": "v1"}]
    assert body["element_list"] == [{"element_id": "12"}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (
            {"dynamic_masks": [{"mask": IMAGE, "trajectories": [{"x": 1, "y": 2}]}]},
            "dynamic_masks[0].trajectories",
        ),
        (
            {
                "dynamic_masks": [
                    {"mask": IMAGE, "trajectories": [{"x": 1, "y": "²"}, {"x": 1, "y": 2}]}
                ]
            },
            "dynamic_masks[0].trajectories[0].y",
        ),
        (
            {"dynamic_masks": [{"mask": "", "trajectories": [{"x": 0, "y": 0}] * 2}]},
            "dynamic_masks[0].mask",
        ),
        (
            {"dynamic_masks": [{"mask": IMAGE, "trajectories": [{"x": 0, "y": 0}] * 78}]},
            "dynamic_masks[0].trajectories",
        ),
        ({"voice_list": [{"voice_id": True}]}, "voice_list[0].voice_id"),
        ({"voice_list": [{"voice": "v1"}]}, "voice_list[0]"),
        ({"voice_list": [{"voice_id": "a"}] * 3}, "voice_list"),
        ({"element_list": [{"element_id": " "}]}, "element_list[0].element_id"),
        ({"image": 5}, "image"),
        ({"image_tail": "data:image/png;base64,AA"}, "image_tail"),
        ({"static_mask": ""}, "static_mask"),
    ],
)
def test_image_to_video_nested_mistakes(fields: dict[str, Any], field: str) -> None:
    """Each nested mistake names its full path."""
    with pytest.raises(kling.ValidationError) as info:
        kling.ImageToVideo(**{"image": IMAGE, **fields})
    assert info.value.field == field


def test_request_problems_lists_every_field() -> None:
    """Every wrong field is reported, not only the first; a valid object builds."""
    request, problems = request_problems(
        "text2video",
        {"prompt": 5, "duration": "²", "cfg_scale": "high", "watermark": "yes", "colour": "red"},
    )
    assert request is None
    assert sorted(problem.field for problem in problems) == [
        "cfg_scale",
        "colour",
        "duration",
        "prompt",
        "watermark",
    ]
    assert build_request("image2video", {"image": IMAGE, "duration": "05"}).duration == "5"
    with pytest.raises(kling.ValidationError, match="prompt"):
        build_request("text2video", {})
    with pytest.raises(kling.ConfigurationError, match="unknown task kind"):
        build_request("holograms", {})


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: kling.ImageGeneration(prompt="x", n=10), "n"),
        (lambda: kling.ImageGeneration(prompt="x", n="٣"), "n"),
        (lambda: kling.ImageGeneration(prompt="x", aspect_ratio="5:4"), "aspect_ratio"),
        (lambda: kling.ImageGeneration(prompt="x", image_fidelity=float("nan")), "image_fidelity"),
        (lambda: kling.ImageGeneration(prompt=" "), "prompt"),
        (lambda: kling.VirtualTryOn(human_image=IMAGE), "cloth_image"),
        (lambda: kling.VideoEffects(effect_scene="hug"), "input"),
        (lambda: kling.VideoEffects(effect_scene="hug", input={}), "input.image/images"),
        (lambda: kling.VideoEffects(effect_scene="hug", input={"images": IMAGE}), "input.images"),
        (lambda: kling.VideoEffects(effect_scene="hug", input={"images": [IMAGE]}), "input.images"),
        (
            lambda: kling.VideoEffects(effect_scene="hug", input={"image": IMAGE, "duration": "²"}),
            "input.duration",
        ),
        (lambda: kling.MultiImageToVideo(prompt="x"), "image_list"),
        (lambda: kling.MultiImageToVideo(prompt="x", image_list=[]), "image_list"),
        (
            lambda: kling.MultiImageToVideo(prompt="x", image_list=[{"image": IMAGE}] * 5),
            "image_list",
        ),
        (
            lambda: kling.MultiImageToImage(prompt="x", subject_image_list=[{"img": IMAGE}]),
            "subject_image_list[0]",
        ),
        (
            lambda: kling.OmniVideo(
                prompt="x", image_list=[{"image_url": IMAGE, "type": "middle"}]
            ),
            "image_list[0].type",
        ),
        (lambda: kling.OmniVideo(prompt="x", video_list=[{"video_url": "u"}] * 2), "video_list"),
        (lambda: kling.TextToAudio(prompt="x", duration=11), "duration"),
        (lambda: kling.TextToAudio(prompt="x", duration="\u0665"), "duration"),
        (lambda: kling.TextToAudio(prompt="x", duration="2.5"), "duration"),
        (lambda: kling.VideoToAudio(video_id="a", video_url="b"), "video_id/video_url"),
        (lambda: kling.AvatarImageToVideo(image=IMAGE), "audio_id/sound_file"),
        (lambda: kling.VideoExtend(prompt="x"), "video_id"),
        (lambda: kling.ImageExpand(image=IMAGE, up_expansion_ratio=3), "up_expansion_ratio"),
        (lambda: kling.OmniImage(prompt="x", resolution="4k"), "resolution"),
        (lambda: kling.MotionControl(image_url=IMAGE, video_url="u"), "character_orientation"),
        (lambda: kling.MotionControl(video_url="u", character_orientation="image"), "image_url"),
    ],
)
def test_other_kinds_check_their_fields(build: Any, field: str) -> None:
    """Every kind's request refuses a bad field by name, before anything is sent."""
    with pytest.raises(kling.ValidationError) as info:
        build()
    assert info.value.field == field


def test_other_kinds_convert_what_they_can() -> None:
    """Digits are normalised and dicts converted, as for text2video."""
    assert kling.ImageGeneration(prompt="x", n="03").n == 3
    assert kling.TextToAudio(prompt="x", duration="4.5").duration == 4.5
    effects = kling.VideoEffects(effect_scene="hug", input={"image": IMAGE, "duration": "05"})
    assert effects.input is not None
    assert effects.input.duration == "5"
    body = wire.request_body(effects)
    assert body == {"effect_scene": "hug", "input": {"image": IMAGE, "duration": "5"}}
