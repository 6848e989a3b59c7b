"""Requests validate themselves on construction; limits are checked per provider."""

from __future__ import annotations

import pytest

import kling_async as kling
from kling_async.models import MultiPrompt


def test_duration_travels_as_string() -> None:
    """An int duration becomes the string the API expects."""
    assert kling.TextToVideo(prompt="x", duration=10).duration == "10"
    assert kling.TextToVideo(prompt="x").duration == "5"


@pytest.mark.parametrize("bad", ["5s", "", 5.5, True])
def test_duration_rejects_non_seconds(bad: object) -> None:
    """Anything but whole seconds is refused, naming the field."""
    with pytest.raises(kling.ValidationError, match="duration"):
        kling.TextToVideo(prompt="x", duration=bad)  # type: ignore[arg-type]


def test_mode_must_be_std_or_pro() -> None:
    """'standard' is what the live API rejects; the client catches it first."""
    with pytest.raises(kling.ValidationError, match="mode: must be one of 'std', 'pro', '4k'"):
        kling.TextToVideo(prompt="x", mode="standard")  # type: ignore[arg-type]


def test_validation_error_is_invalid_request_error() -> None:
    """Client-side validation errors belong to the InvalidRequestError family and ValueError."""
    with pytest.raises(kling.InvalidRequestError) as info:
        kling.TextToVideo(prompt="  ")
    assert isinstance(info.value, ValueError)
    assert info.value.field == "prompt"  # type: ignore[attr-defined]


def test_cfg_scale_range() -> None:
    """cfg_scale lives in [0, 1]."""
    with pytest.raises(kling.ValidationError, match="cfg_scale"):
        kling.TextToVideo(prompt="x", cfg_scale=1.5)


def test_camera_simple_needs_exactly_one_move() -> None:
    """A simple camera control has exactly one non-zero value."""
    kling.CameraControl(type="simple", config=kling.CameraConfig(pan=-3))
    with pytest.raises(kling.ValidationError, match="exactly one"):
        kling.CameraControl(type="simple", config=kling.CameraConfig(pan=1, zoom=2))
    with pytest.raises(kling.ValidationError, match="exactly one"):
        kling.CameraControl(type="simple", config=kling.CameraConfig())
    with pytest.raises(kling.ValidationError, match="required"):
        kling.CameraControl(type="simple")


def test_camera_values_in_range() -> None:
    """Each camera value is in [-10, 10]."""
    with pytest.raises(kling.ValidationError, match=r"config\.zoom"):
        kling.CameraConfig(zoom=11)


def test_camera_presets_take_no_config() -> None:
    """Presets must not carry a config."""
    kling.CameraControl(type="down_back")
    with pytest.raises(kling.ValidationError, match="omitted"):
        kling.CameraControl(type="forward_up", config=kling.CameraConfig(zoom=1))
    with pytest.raises(kling.ValidationError, match=r"camera_control\.type"):
        kling.CameraControl(type="sideways")  # type: ignore[arg-type]


def test_multi_shot_durations_must_sum() -> None:
    """Multi-shot prompts must add up to the total duration."""
    shots = (
        MultiPrompt(index=1, prompt="a", duration="2"),
        MultiPrompt(index=2, prompt="b", duration="3"),
    )
    limits = kling.RequestLimits()
    limits.check(
        kling.TextToVideo(multi_shot=True, shot_type="customize", multi_prompt=shots, duration="5")
    )
    wrong = kling.TextToVideo(
        multi_shot=True, shot_type="customize", multi_prompt=shots, duration="10"
    )
    with pytest.raises(kling.ValidationError, match="add up"):
        limits.check(wrong)


def test_image_to_video_rules() -> None:
    """An image is required, no data: prefix, and exclusive groups stay exclusive."""
    with pytest.raises(kling.ValidationError, match="image"):
        kling.ImageToVideo(prompt="x")
    with pytest.raises(kling.ValidationError, match="data:"):
        kling.ImageToVideo(image="data:image/png;base64,AAAA")
    both = kling.ImageToVideo(
        image="https://cdn.test/a.png",
        image_tail="https://cdn.test/b.png",
        camera_control=kling.CameraControl(type="down_back"),
    )
    with pytest.raises(kling.ValidationError, match="camera_control"):
        kling.RequestLimits().check(both)


def test_limits_are_configurable() -> None:
    """CometAPI's 500-character prompt limit is the default; Kling's 2500 is one call away."""
    long = kling.TextToVideo(prompt="x" * 501)
    with pytest.raises(kling.ValidationError, match=r"prompt: is 501 characters; the limit is 500"):
        kling.RequestLimits.cometapi().check(long)
    kling.RequestLimits.kling().check(long)
    with pytest.raises(kling.ValidationError, match="negative_prompt"):
        kling.RequestLimits().check(kling.TextToVideo(prompt="x", negative_prompt="n" * 201))
    with pytest.raises(kling.ValidationError, match="aspect_ratio"):
        kling.RequestLimits.kling().check(kling.TextToVideo(prompt="x", aspect_ratio="4:3"))
    with pytest.raises(kling.ValidationError, match="at most 15s"):
        kling.RequestLimits().check(kling.TextToVideo(prompt="x", duration="20"))


def test_status_parsing_keeps_unknown() -> None:
    """Every documented spelling maps; an unknown one is kept as UNKNOWN, not an error."""
    assert kling.TaskStatus.parse("succeeded") is kling.TaskStatus.SUCCEED
    assert kling.TaskStatus.parse("FAILURE") is kling.TaskStatus.FAILED
    assert kling.TaskStatus.parse("IN_PROGRESS") is kling.TaskStatus.PROCESSING
    assert kling.TaskStatus.parse("NOT_START") is kling.TaskStatus.SUBMITTED
    assert kling.TaskStatus.parse("teleporting") is kling.TaskStatus.UNKNOWN
    assert not kling.TaskStatus.UNKNOWN.is_finished
