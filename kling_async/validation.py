"""Limits that differ between providers, checked before a request is sent.

CometAPI documents a 500-character prompt and a 200-character negative prompt; Kling itself allows
2500 for both. Which limits the gateway enforces is unconfirmed, so they are settings
([`RequestLimits`][kling_async.validation.RequestLimits]), not constants. [`RequestLimits.check`][kling_async.validation.RequestLimits.check] also applies the model rules
of [`kling_async.model_rules`][kling_async.model_rules], minus those the limits or the request relax.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from .errors import ValidationError
from .kinds import kind_for_request
from .model_rules import model_rule_problems

__all__ = ["RequestLimits"]

_COMETAPI_ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3")
_KLING_ASPECT_RATIOS = ("16:9", "9:16", "1:1")
_IMAGE_ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9")


def _rule_names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(names)


@attrs.frozen
class RequestLimits:
    """Provider-dependent limits on request fields.

    Use [`cometapi`][kling_async.validation.RequestLimits.cometapi] (the default) or [`kling`][kling_async.validation.RequestLimits.kling], or build your own; ``None`` turns a check
    off. ``relax_rules`` names model rules ([`RULES`][kling_async.model_rules.RULES]) to skip for
    every request, for when the documentation is behind the API. ``aspect_ratios`` applies to
    video kinds, ``image_aspect_ratios`` to the kinds that make images (the same list on both
    providers: kling-api.md §1.4).

    Examples:
        >>> RequestLimits.kling().prompt_max
        2500
    """

    prompt_max: int | None = 500
    negative_prompt_max: int | None = 200
    shot_prompt_max: int | None = 512
    aspect_ratios: tuple[str, ...] | None = _COMETAPI_ASPECT_RATIOS
    image_aspect_ratios: tuple[str, ...] | None = _IMAGE_ASPECT_RATIOS
    max_duration: int | None = 15
    min_duration: int | None = 3
    relax_rules: frozenset[str] = attrs.field(factory=frozenset, converter=_rule_names)

    @classmethod
    def cometapi(cls) -> RequestLimits:
        """Limits from CometAPI's documentation (prompt 500, negative prompt 200)."""
        return cls()

    @classmethod
    def kling(cls) -> RequestLimits:
        """Limits from Kling's official documentation (2500 and 2500, three aspect ratios)."""
        return cls(prompt_max=2500, negative_prompt_max=2500, aspect_ratios=_KLING_ASPECT_RATIOS)

    def check(self, request: Any) -> None:
        """Raise the first of [`problems`][kling_async.validation.RequestLimits.problems], if any: a [`ValidationError`][kling_async.errors.ValidationError]
        naming the field (a [`ModelRuleError`][kling_async.model_rules.ModelRuleError] also names the rule).
        """
        found = self.problems(request)
        if found:
            raise found[0]

    def problems(self, request: Any) -> list[ValidationError]:
        """Every limit and model rule *request* breaks, in field order."""
        kind = kind_for_request(request)
        found: list[ValidationError] = []
        _check_length(found, "prompt", getattr(request, "prompt", None), self.prompt_max)
        _check_length(
            found,
            "negative_prompt",
            getattr(request, "negative_prompt", None),
            self.negative_prompt_max,
        )
        aspect_ratio = getattr(request, "aspect_ratio", None)
        # Image kinds take more ratios than video ones (kling-api.md §1.4).
        ratios = self.image_aspect_ratios if kind.results == "images" else self.aspect_ratios
        if ratios is not None and aspect_ratio is not None and aspect_ratio not in ratios:
            found.append(
                ValidationError(
                    "aspect_ratio", f"must be one of {', '.join(ratios)}, got {aspect_ratio!r}"
                )
            )
        duration = getattr(request, "duration", None)
        if duration is not None:
            seconds = int(duration)
            if self.min_duration is not None and seconds < self.min_duration:
                found.append(ValidationError("duration", f"must be at least {self.min_duration}s"))
            if self.max_duration is not None and seconds > self.max_duration:
                found.append(ValidationError("duration", f"must be at most {self.max_duration}s"))
        for shot in getattr(request, "multi_prompt", None) or ():
            _check_length(
                found, f"multi_prompt[{shot.index}].prompt", shot.prompt, self.shot_prompt_max
            )
        found.extend(model_rule_problems(request, kind.name, relaxed=self.relax_rules))
        return found


def _check_length(
    found: list[ValidationError], field: str, value: str | None, limit: int | None
) -> None:
    if value is not None and limit is not None and len(value) > limit:
        found.append(ValidationError(field, f"is {len(value)} characters; the limit is {limit}"))
