"""Rules that depend on the model (and on field combinations), checked before a request is sent.

The capability map (kling-api.md §4) says which model serves which kind, in which modes, for how
long, with which extras. The documentation drifts behind the API, so every rule has a name and
can be switched off: per request with ``relax_rules={"duration"}``, or for a whole client with
``RequestLimits(relax_rules=...)``. A request without ``model_name`` is checked only against the
rules that hold for every model, because the default model differs between providers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from ._images import image_problem
from .errors import ValidationError

__all__ = [
    "MODELS",
    "RULES",
    "ModelRuleError",
    "ModelSpec",
    "check_model_rules",
    "model_rule_problems",
]

RULES: dict[str, str] = {
    "known-model": "model_name is one the documentation lists",
    "model-kind": "the model serves this kind of task",
    "mode": "the model takes this mode (some take none)",
    "duration": "the model takes this duration",
    "camera-control": "camera_control only on the model, mode and duration documented for it",
    "sound": "sound='on' only on models with audio, in pro mode",
    "cfg-scale": "cfg_scale is not taken by kling-v2.x models",
    "multi-shot": "multi_shot, shot_type and multi_prompt only on multi-shot models",
    "voice-list": "voice_list only on models with speech, in pro mode",
    "element-list": "element_list only on models with elements",
    "exclusive-fields": "image2video: image_tail, motion masks and camera_control exclude each other",
    "image-format": "base64 images are JPG/PNG, at most 10 MB, 300 px or more, 1:2.5 to 2.5:1",
    "multi-prompt-total": "multi-shot durations add up to the task's duration",
}
"""Every rule by name, with what it checks."""


class ModelRuleError(ValidationError):
    """A request breaks a documented model rule; nothing was sent.

    Attributes:
        rule: the rule's name (a key of [`RULES`][kling_async.model_rules.RULES]), to pass in ``relax_rules`` when the
            documentation is wrong.
    """

    def __init__(self, field: str, message: str, *, rule: str) -> None:
        self.rule = rule
        super().__init__(
            field,
            f"{message} [rule {rule!r}; the documentation may be behind the API: to send it "
            f"anyway, pass relax_rules={{{rule!r}}} on the request or in RequestLimits]",
        )
        self.reason = message


_V1 = (5, 10)
_V3 = tuple(range(3, 16))


@attrs.frozen
class ModelSpec:
    """What one model takes, per the capability map.

    Attributes:
        name: the ``model_name``.
        kinds: the task kinds it serves (``"text2video"``, ...).
        modes: the modes it takes; empty when it takes no ``mode`` at all.
        durations: the durations (seconds) it takes.
        sound: whether it makes audio (``sound="on"``, pro mode only).
        voices: whether it takes ``voice_list`` (pro mode only).
        elements: whether it takes ``element_list``.
        multi_shot: whether it takes ``multi_shot``/``multi_prompt``.
        cfg_scale: whether it takes ``cfg_scale``.
    """

    name: str
    kinds: frozenset[str]
    modes: tuple[str, ...] = ("std", "pro")
    durations: tuple[int, ...] = _V1
    sound: bool = False
    voices: bool = False
    elements: bool = False
    multi_shot: bool = False
    cfg_scale: bool = True


def _spec(name: str, kinds: Iterable[str], **given: Any) -> ModelSpec:
    return ModelSpec(name=name, kinds=frozenset(kinds), **given)


_VIDEO = ("text2video", "image2video")
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec("kling-v1", _VIDEO),
        _spec("kling-v1-5", ("image2video",)),
        _spec("kling-v1-6", (*_VIDEO, "multi-image2video", "multi-elements", "effects")),
        _spec("kling-v2-master", _VIDEO, modes=(), cfg_scale=False),
        _spec("kling-v2-1", ("image2video",), cfg_scale=False),
        _spec("kling-v2-1-master", _VIDEO, modes=(), cfg_scale=False),
        _spec("kling-v2-5-turbo", _VIDEO, cfg_scale=False),
        _spec("kling-v2-6", (*_VIDEO, "motion-control"), sound=True, voices=True, cfg_scale=False),
        _spec(
            "kling-v3",
            (*_VIDEO, "motion-control"),
            modes=("std", "pro", "4k"),
            durations=_V3,
            sound=True,
            voices=True,
            elements=True,
            multi_shot=True,
        ),
        _spec("kling-video-o1", ("omni-video",), durations=tuple(range(3, 11))),
        _spec(
            "kling-v3-omni",
            ("omni-video",),
            durations=_V3,
            sound=True,
            elements=True,
            multi_shot=True,
        ),
    )
}
"""The documented video models (kling-api.md §4)."""

_TABLED_KINDS = frozenset().union(*(spec.kinds for spec in MODELS.values()))


def _listed(values: Iterable[object]) -> str:
    return ", ".join(repr(str(value)) for value in values) or "none"


def check_model_rules(request: Any, kind: str, *, relaxed: frozenset[str] = frozenset()) -> None:
    """Raise the first of [`model_rule_problems`][kling_async.model_rules.model_rule_problems], if any.

    Raises:
        ValidationError: *relaxed* names a rule that does not exist.
        ModelRuleError: naming the field, the rule and how to relax it.
    """
    problems = model_rule_problems(request, kind, relaxed=relaxed)
    if problems:
        raise problems[0]


def model_rule_problems(
    request: Any, kind: str, *, relaxed: frozenset[str] = frozenset()
) -> list[ValidationError]:
    """Every rule *request* (of *kind*) breaks, as errors naming field and rule.

    Rules named in *relaxed* or in the request's own ``relax_rules`` are skipped; an unknown
    rule name there is itself a problem (a typo would otherwise relax nothing, silently).
    """
    relaxed = relaxed | getattr(request, "relax_rules", frozenset())
    unknown = sorted(relaxed - set(RULES))
    if unknown:
        return [
            ValidationError(
                "relax_rules", f"unknown rule(s) {_listed(unknown)}; known: {_listed(RULES)}"
            )
        ]
    problems = _general(request, kind)
    model = getattr(request, "model_name", None)
    if model is not None and kind in _TABLED_KINDS:
        # The table describes the video models only: an image kind's model_name (kling-v3,
        # kling-image-o1, ...) is the server's to judge.
        problems.extend(_for_model(request, kind, model))
    return [
        ModelRuleError(field, message, rule=rule)
        for rule, field, message in problems
        if rule not in relaxed
    ]


_Problem = tuple[str, str, str]


_IMAGE_FIELDS = ("image", "image_tail", "static_mask", "human_image", "cloth_image")


def _general(request: Any, kind: str) -> list[_Problem]:
    problems: list[_Problem] = []
    for field in _IMAGE_FIELDS:
        value = getattr(request, field, None)
        problem = image_problem(value) if isinstance(value, str) else None
        if problem is not None:
            problems.append(("image-format", field, problem))
    if kind == "image2video":
        groups = {
            "image_tail": request.image_tail is not None,
            "static_mask/dynamic_masks": request.static_mask is not None
            or bool(request.dynamic_masks),
            "camera_control": request.camera_control is not None,
        }
        chosen = [name for name, present in groups.items() if present]
        if len(chosen) > 1:
            problems.append(("exclusive-fields", chosen[1], f"cannot be combined with {chosen[0]}"))
    shots = getattr(request, "multi_prompt", None)
    if shots:
        total = sum(int(shot.duration) for shot in shots)
        if total != int(request.duration):
            problems.append(
                (
                    "multi-prompt-total",
                    "multi_prompt",
                    f"shot durations add up to {total}s, but duration is {request.duration}s",
                )
            )
    return problems


def _for_model(request: Any, kind: str, model: str) -> list[_Problem]:
    spec = MODELS.get(model)
    if spec is None:
        return [("known-model", "model_name", f"{model!r} is not one of {_listed(MODELS)}")]
    problems: list[_Problem] = []
    if kind not in spec.kinds:
        serving = [name for name, item in MODELS.items() if kind in item.kinds]
        problems.append(
            (
                "model-kind",
                "model_name",
                f"{model} does not serve {kind}; models that do: {_listed(serving)}",
            )
        )
    mode = getattr(request, "mode", None)
    if mode is not None and mode not in spec.modes:
        takes = f"takes {_listed(spec.modes)}" if spec.modes else "takes no mode"
        problems.append(("mode", "mode", f"{model} {takes}, got {mode!r}"))
    duration = getattr(request, "duration", None)
    if duration is not None and int(duration) not in spec.durations:
        problems.append(
            ("duration", "duration", f"{model} takes {_listed(spec.durations)}, got {duration!r}")
        )
    pro = mode == "pro" or mode == "4k"
    problems.extend(_extras(request, kind, spec, pro=pro))
    return problems


def _extras(request: Any, kind: str, spec: ModelSpec, *, pro: bool) -> list[_Problem]:
    problems: list[_Problem] = []
    model = spec.name
    if getattr(request, "sound", None) == "on" and not (spec.sound and pro):
        why = "in pro mode only" if spec.sound else "on no mode (it makes no audio)"
        problems.append(("sound", "sound", f"{model} makes sound {why}"))
    if getattr(request, "voice_list", None) and not (spec.voices and pro):
        why = "in pro mode only" if spec.voices else "not at all"
        problems.append(("voice-list", "voice_list", f"{model} takes voice_list {why}"))
    if getattr(request, "element_list", None) and not spec.elements:
        problems.append(("element-list", "element_list", f"{model} takes no element_list"))
    if getattr(request, "cfg_scale", None) is not None and not spec.cfg_scale:
        problems.append(("cfg-scale", "cfg_scale", f"{model} does not take cfg_scale"))
    shot_fields = [
        name
        for name in ("multi_shot", "shot_type", "multi_prompt")
        if getattr(request, name, None) not in (None, False)
    ]
    if shot_fields and not spec.multi_shot:
        problems.append(("multi-shot", shot_fields[0], f"{model} takes no {'/'.join(shot_fields)}"))
    camera = getattr(request, "camera_control", None)
    if camera is not None:
        problem = _camera(request, kind, model, camera.type)
        if problem is not None:
            problems.append(("camera-control", "camera_control", problem))
    return problems


def _camera(request: Any, kind: str, model: str, camera_type: str) -> str | None:
    # Where camera control is documented to work (kling-api.md §3); elsewhere the model is said
    # to "intelligently match", and whether an unsupported model refuses it is UNCONFIRMED.
    mode = request.mode or "std"
    if kind == "text2video":
        if model == "kling-v1" and mode == "std" and request.duration == "5":
            return None
        return "is documented for text2video on kling-v1, mode 'std', 5s only"
    if (model, mode, request.duration, camera_type) == ("kling-v1-5", "pro", "5", "simple"):
        return None
    return "is documented for image2video on kling-v1-5, mode 'pro', 5s, type 'simple' only"
