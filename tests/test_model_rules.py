"""Model-dependent rules: each refuses with its name, and each can be relaxed (issue 13)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import kling_async as kling
from kling_async.model_rules import MODELS, RULES, ModelRuleError, check_model_rules
from kling_async.testing import FakeKlingServer
from kling_async.validation import RequestLimits

IMAGE = "https://cdn.test/cat.png"
LIMITS = kling.RequestLimits.kling()


def _t2v(**fields: Any) -> kling.TextToVideo:
    return kling.TextToVideo(**{"prompt": "x", **fields})


def _i2v(**fields: Any) -> kling.ImageToVideo:
    return kling.ImageToVideo(**{"image": IMAGE, **fields})


BROKEN: list[tuple[str, Any]] = [
    ("known-model", _t2v(model_name="kling-v9")),
    ("model-kind", _t2v(model_name="kling-v1-5")),
    ("model-kind", _t2v(model_name="kling-video-o1")),
    ("mode", _t2v(model_name="kling-v2-master", mode="std")),
    ("mode", _t2v(model_name="kling-v1", mode="4k")),
    ("duration", _t2v(model_name="kling-v1", duration=7)),
    (
        "camera-control",
        _t2v(model_name="kling-v1", mode="pro", camera_control={"type": "down_back"}),
    ),
    (
        "camera-control",
        _i2v(model_name="kling-v1-5", mode="pro", camera_control={"type": "down_back"}),
    ),
    (
        "camera-control",
        _i2v(model_name="kling-v1", camera_control={"type": "simple", "config": {"pan": 1}}),
    ),
    ("sound", _t2v(model_name="kling-v2-6", sound="on")),
    ("sound", _t2v(model_name="kling-v1", mode="pro", sound="on")),
    ("cfg-scale", _t2v(model_name="kling-v2-master", cfg_scale=0.5)),
    ("multi-shot", _t2v(model_name="kling-v2-6", multi_shot=True)),
    ("voice-list", _t2v(model_name="kling-v2-6", mode="std", voice_list=[{"voice_id": "a"}])),
    ("voice-list", _t2v(model_name="kling-v1", mode="pro", voice_list=[{"voice_id": "a"}])),
    ("element-list", _i2v(model_name="kling-v2-6", element_list=[{"element_id": 1}])),
    ("exclusive-fields", _i2v(image_tail=IMAGE, camera_control={"type": "down_back"})),
    ("exclusive-fields", _i2v(static_mask=IMAGE, image_tail=IMAGE)),
    (
        "multi-prompt-total",
        _t2v(
            multi_shot=True,
            duration=10,
            multi_prompt=[{"index": 1, "prompt": "a", "duration": 3}],
        ),
    ),
]


@pytest.mark.parametrize(("rule", "request_"), BROKEN)
def test_each_rule_refuses_naming_itself_and_can_be_relaxed(rule: str, request_: Any) -> None:
    """The error names the rule and how to relax it; relaxing it (per call or per client) lets
    the same request through."""
    with pytest.raises(ModelRuleError) as info:
        LIMITS.check(request_)
    assert info.value.rule == rule
    assert f"relax_rules={{'{rule}'}}" in str(info.value)
    assert isinstance(info.value, kling.InvalidRequestError)
    attrs.evolve(LIMITS, relax_rules=frozenset({rule})).check(request_)
    relaxed = type(request_)(**{**_fields(request_), "relax_rules": {rule}})
    LIMITS.check(relaxed)


def _fields(request: Any) -> dict[str, Any]:
    return {field.name: getattr(request, field.name) for field in attrs.fields(type(request))}


@pytest.mark.parametrize(
    "request_",
    [
        _t2v(model_name="kling-v1", mode="std", camera_control={"type": "down_back"}),
        _i2v(
            model_name="kling-v1-5",
            mode="pro",
            camera_control={"type": "simple", "config": {"zoom": 2}},
        ),
        _t2v(model_name="kling-v2-6", mode="pro", sound="on", voice_list=[{"voice_id": "a"}]),
        _t2v(model_name="kling-v3", mode="4k", duration=15, sound="on"),
        _t2v(
            model_name="kling-v3",
            multi_shot=True,
            shot_type="customize",
            duration=8,
            multi_prompt=[
                {"index": 1, "prompt": "a", "duration": 3},
                {"index": 2, "prompt": "b", "duration": 5},
            ],
            element_list=[{"element_id": "e"}],
        ),
        _i2v(model_name="kling-v2-1", mode="pro", duration=10, image_tail=IMAGE),
        _t2v(cfg_scale=0.5, sound="on", mode="4k"),  # no model: only model-free rules apply
    ],
)
def test_documented_combinations_pass(request_: Any) -> None:
    """What the capability map allows goes through."""
    LIMITS.check(request_)


def test_unknown_relaxed_rule_is_refused() -> None:
    """A typo in relax_rules would otherwise relax nothing, silently."""
    with pytest.raises(kling.ValidationError, match="unknown rule"):
        LIMITS.check(_t2v(relax_rules={"durations"}))
    with pytest.raises(kling.ValidationError, match="unknown rule"):
        check_model_rules(_t2v(), "text2video", relaxed=frozenset({"nope"}))


def test_problems_lists_every_broken_rule() -> None:
    """problems() reports all, check() the first."""
    request = _t2v(model_name="kling-v2-master", mode="pro", duration=7, cfg_scale=0.5)
    rules = [getattr(problem, "rule", None) for problem in LIMITS.problems(request)]
    assert rules == ["mode", "duration", "cfg-scale"]


def test_tables_are_consistent() -> None:
    """Every model serves something; every rule has a description."""
    assert all(spec.kinds for spec in MODELS.values())
    assert all(RULES.values())
    assert {"kling-v1", "kling-v3", "kling-video-o1", "kling-v3-omni"} <= set(MODELS)


async def test_client_refuses_before_any_request(
    client: kling.KlingClient, server: FakeKlingServer
) -> None:
    """A broken rule stops submit() before the network; relaxed, the request is sent."""
    request = _t2v(model_name="kling-v1", duration=7)
    with pytest.raises(ModelRuleError, match="duration"):
        await client.submit(request)
    assert server.tasks == {}


@pytest.mark.parametrize("limits", [RequestLimits.kling(), RequestLimits.cometapi()])
@pytest.mark.parametrize("model", ["kling-v3", "kling-v2-1", "kling-v2", "kling-v1"])
def test_image_kinds_take_their_documented_models_and_ratios(
    limits: RequestLimits, model: str
) -> None:
    """images/generations takes kling-v3, kling-v2-1 and older image models, and the eight
    image ratios (kling-api.md §1.4), on either provider: the video model table and the
    video ratios are not theirs."""
    for ratio in ("4:3", "21:9", "2:3"):
        limits.check(kling.ImageGeneration(prompt="a cat", model_name=model, aspect_ratio=ratio))
    limits.check(kling.OmniImage(prompt="a cat", model_name="kling-image-o1"))
    with pytest.raises(kling.ValidationError, match="aspect_ratio"):
        limits.check(kling.ImageGeneration(prompt="a cat", aspect_ratio="5:4"))
    # Video kinds keep their own lists.
    with pytest.raises(kling.ValidationError, match="aspect_ratio"):
        limits.check(kling.TextToVideo(prompt="a cat", aspect_ratio="21:9"))
