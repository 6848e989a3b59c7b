"""Limits that differ between providers, checked before a request is sent.

CometAPI documents a 500-character prompt and a 200-character negative prompt; Kling itself allows
2500 for both. Which limits the gateway enforces is unconfirmed, so they are settings
(:class:`RequestLimits`), not constants.
"""

from __future__ import annotations

import attrs

from .errors import ValidationError
from .models import MultiPrompt, TaskRequest, TextToVideo

__all__ = ["RequestLimits"]

_COMETAPI_ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3")
_KLING_ASPECT_RATIOS = ("16:9", "9:16", "1:1")


@attrs.frozen
class RequestLimits:
    """Provider-dependent limits on request fields.

    Use :meth:`cometapi` (the default) or :meth:`kling`, or build your own; ``None`` turns a check
    off.

    Examples:
        >>> RequestLimits.kling().prompt_max
        2500
    """

    prompt_max: int | None = 500
    negative_prompt_max: int | None = 200
    shot_prompt_max: int | None = 512
    aspect_ratios: tuple[str, ...] | None = _COMETAPI_ASPECT_RATIOS
    max_duration: int | None = 15
    min_duration: int | None = 3

    @classmethod
    def cometapi(cls) -> RequestLimits:
        """Limits from CometAPI's documentation (prompt 500, negative prompt 200)."""
        return cls()

    @classmethod
    def kling(cls) -> RequestLimits:
        """Limits from Kling's official documentation (2500 and 2500, three aspect ratios)."""
        return cls(prompt_max=2500, negative_prompt_max=2500, aspect_ratios=_KLING_ASPECT_RATIOS)

    def check(self, request: TaskRequest) -> None:
        """Raise :class:`~kling_async.ValidationError` naming the first field over a limit."""
        _check_length("prompt", request.prompt, self.prompt_max)
        _check_length("negative_prompt", request.negative_prompt, self.negative_prompt_max)
        if (
            self.aspect_ratios is not None
            and request.aspect_ratio is not None
            and request.aspect_ratio not in self.aspect_ratios
        ):
            raise ValidationError(
                "aspect_ratio",
                f"must be one of {', '.join(self.aspect_ratios)}, got {request.aspect_ratio!r}",
            )
        seconds = int(request.duration)
        if self.min_duration is not None and seconds < self.min_duration:
            raise ValidationError("duration", f"must be at least {self.min_duration}s")
        if self.max_duration is not None and seconds > self.max_duration:
            raise ValidationError("duration", f"must be at most {self.max_duration}s")
        if isinstance(request, TextToVideo) and request.multi_prompt:
            for shot in request.multi_prompt:
                _check_shot(shot, self.shot_prompt_max)


def _check_shot(shot: MultiPrompt, limit: int | None) -> None:
    _check_length(f"multi_prompt[{shot.index}].prompt", shot.prompt, limit)


def _check_length(field: str, value: str | None, limit: int | None) -> None:
    if value is not None and limit is not None and len(value) > limit:
        raise ValidationError(field, f"is {len(value)} characters; the limit is {limit}")
