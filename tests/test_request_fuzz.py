"""Property-based: building a request from any values yields a request or a ValidationError.

Never a TypeError, AttributeError or a bare ValueError; and whatever is built can be turned into
a JSON body whose number strings are ASCII digits. Bounded and derandomized, so CI is stable.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kling_async as kling
from kling_async import wire
from kling_async.kinds import KINDS, request_problems
from kling_async.testing._config import Validation
from kling_async.testing._kinds import DEFAULT_KINDS

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**9), max_value=10**9),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        ["5", "05", "\u00b2", "\uff15", "\u0665", "std", "pro", "4k", "on", "simple", "kling-v3"]
    ),
    st.sampled_from(["https://cdn.test/a.png", "data:image/png;base64,AA", "customize"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "config",
                    "zoom",
                    "pan",
                    "index",
                    "prompt",
                    "duration",
                    "mask",
                    "trajectories",
                    "x",
                    "y",
                    "voice_id",
                    "element_id",
                    "extra",
                ]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=10,
)


_IMAGE = "https://cdn.test/a.png"
# Plausible values per field, so that most requests get far enough for one odd value to matter.
_GOOD: dict[str, st.SearchStrategy[Any]] = {
    "prompt": st.text(min_size=1, max_size=20),
    "image": st.just(_IMAGE),
    "duration": st.sampled_from(["5", "05", 5, 10, "10"]),
    "mode": st.sampled_from(["std", "pro", "4k"]),
    "cfg_scale": st.floats(min_value=0, max_value=1),
    "sound": st.sampled_from(["on", "off"]),
    "watermark": st.booleans(),
    "multi_shot": st.booleans(),
    "camera_control": st.sampled_from(
        [{"type": "down_back"}, {"type": "simple", "config": {"zoom": 3}}]
    ),
    "voice_list": st.just([{"voice_id": "v"}]),
}


_VIDEO = "https://cdn.test/v.mp4"
# A valid request of each kind, before the drawn fields are added.
_BASE: dict[str, dict[str, Any]] = {
    "text2video": {"prompt": "x"},
    "image2video": {"image": _IMAGE},
    "multi-image2video": {"prompt": "x", "image_list": [{"image": _IMAGE}]},
    "multi-elements": {"session_id": "session-1", "edit_mode": "removal", "prompt": "x"},
    "effects": {"effect_scene": "hug", "input": {"image": _IMAGE}},
    "omni-video": {"prompt": "x", "image_list": [{"image_url": _IMAGE}]},
    "avatar": {"image": _IMAGE, "audio_id": "a1"},
    "lip-sync": {"input": {"video_id": "v1", "mode": "text2video", "text": "hi", "voice_id": "v"}},
    "advanced-lip-sync": {
        "session_id": "session-1",
        "face_choose": [{"face_id": "0", "audio_id": "a", "sound_end_time": 3000}],
    },
    "image-generation": {"prompt": "x"},
    "virtual-try-on": {"human_image": _IMAGE, "cloth_image": _IMAGE},
    "text-to-audio": {"prompt": "x"},
    "video-to-audio": {"video_url": _VIDEO},
    "video-extend": {"video_id": "v1"},
    "motion-control": {"image_url": _IMAGE, "video_url": _VIDEO, "character_orientation": "image"},
    "image-expand": {"image": _IMAGE},
    "omni-image": {"prompt": "x"},
    "multi-image2image": {"prompt": "x", "subject_image_list": [{"image": _IMAGE}]},
}


def _field_names(kind: str) -> list[str]:
    return [field.name for field in attrs.fields(KINDS[kind].request_type)]


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(sorted(KINDS)))
    names = draw(st.lists(st.sampled_from(_field_names(kind)), max_size=6, unique=True))
    fields = dict(_BASE[kind])
    for name in names:
        if draw(st.integers(0, 2)) == 0:
            fields[name] = draw(_values)
        elif name in _GOOD:
            fields[name] = draw(_GOOD[name])
    return kind, fields


def _ascii_digits(text: object) -> bool:
    return isinstance(text, str) and text.isascii() and text.isdigit()


def test_every_kind_has_a_valid_base() -> None:
    """The fuzz starts each kind from a valid request, so odd values are what it varies."""
    assert set(_BASE) == set(KINDS)
    for kind, fields in _BASE.items():
        request, problems = request_problems(kind, fields)
        assert request is not None, problems
        assert not kling.RequestLimits.cometapi().problems(request)


@FUZZ
@given(_requests())
def test_construction_gives_a_request_or_a_validation_error(
    case: tuple[str, dict[str, Any]],
) -> None:
    """Any values: a request (sendable as JSON) or ValidationErrors naming known fields."""
    kind, fields = case
    request_type = KINDS[kind].request_type
    refused: kling.ValidationError | None = None
    try:
        request = request_type(**fields)
    except kling.ValidationError as exc:
        refused = exc
    if refused is not None:
        assert refused.field
        assert refused.reason
        _, problems = request_problems(kind, fields)
        assert problems  # the listing agrees that something is wrong
        return
    body = wire.request_body(request)
    json.dumps(body, allow_nan=False)  # NaN or infinity would be invalid JSON on the wire
    if isinstance(body.get("duration"), str):
        assert _ascii_digits(body["duration"])
    for shot in body.get("multi_prompt", []):
        assert _ascii_digits(shot["duration"])
    if "cfg_scale" in body:
        assert math.isfinite(body["cfg_scale"])
    if "watermark_info" in body:
        assert isinstance(body["watermark_info"]["enabled"], bool)
    for problem in kling.RequestLimits().problems(request):
        assert isinstance(problem, kling.ValidationError)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["type", "config"]),
        _values,
        max_size=2,
    )
)
def test_camera_control_from_any_dict(camera: dict[str, Any]) -> None:
    """A camera_control dict of any content: converted or refused under camera_control."""
    field = "camera_control"
    try:
        kling.TextToVideo(prompt="x", camera_control=camera)
    except kling.ValidationError as exc:
        field = exc.field
    assert field.startswith("camera_control")


@FUZZ
@given(st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=3))
def test_any_unicode_digits_as_duration(text: str) -> None:
    """Digits of every script: ASCII ones are sent (normalised), all others are refused."""
    for build in (
        lambda: kling.TextToVideo(prompt="x", duration=text).duration,
        lambda: kling.MultiPrompt(index=1, prompt="x", duration=text).duration,
    ):
        sent: str | None = None
        reason = ""
        try:
            sent = build()
        except kling.ValidationError as exc:
            reason = exc.reason
        if sent is None:
            assert "ASCII digits" in reason
        else:
            assert text.isascii()
            assert sent == str(int(text))


_PERMISSIVE = Validation(
    durations=tuple(str(seconds) for seconds in range(1, 16)),
    extra_aspect_ratios=("4:3", "3:4", "3:2", "2:3"),
)
_SPECS = {spec.name: spec for spec in DEFAULT_KINDS}


@FUZZ
@given(_requests())
def test_the_emulator_accepts_what_the_client_accepts(case: tuple[str, dict[str, Any]]) -> None:
    """Client and emulator check independently; a request the client would send (no rule
    relaxed) is one the emulator takes, for every kind."""
    kind, fields = case
    request, _ = request_problems(kind, fields)
    if request is None or kling.RequestLimits.cometapi().problems(request):
        return
    body = wire.request_body(request, external_task_id="e")
    _SPECS[kind].validate(body, _PERMISSIVE)  # raises InvalidParameterError on disagreement
