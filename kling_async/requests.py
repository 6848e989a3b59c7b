"""Requests for the kinds beyond text2video and image2video (kling-api.md §1.2, §1.4, §2.1).

Like [`TextToVideo`][kling_async.models.TextToVideo], every field is checked for type and range when the request
is built, nested fields take plain dicts, and ``None`` leaves a field out. Fields the sources
describe only loosely are listed in ``docs/unconfirmed.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from . import _fields
from .models import MODES, Element, Mode

__all__ = [
    "AvatarImageToVideo",
    "EffectInput",
    "ImageExpand",
    "ImageGeneration",
    "ImageRef",
    "LegacyLipSync",
    "LipSyncInput",
    "MotionControl",
    "MultiImageToImage",
    "MultiImageToVideo",
    "OmniImage",
    "OmniImageRef",
    "OmniVideo",
    "OmniVideoRef",
    "TextToAudio",
    "VideoEffects",
    "VideoExtend",
    "VideoToAudio",
    "VirtualTryOn",
]

IMAGE_ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3", "21:9")
_fail = _fields.fail


def _required_text(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _fail(attribute.name, f"is required text, got {_fields.describe(value)}")


def _required_image(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        raise _fail(attribute.name, "is required (an image URL or raw base64)")
    _fields.image(instance, attribute, value)


def _count(value: int) -> int:
    count = _fields.whole_number("n", value)
    if not 1 <= count <= 9:
        raise _fail("n", f"must be from 1 to 9 images, got {count}")
    return count


def _optional_count(value: int | None) -> int | None:
    return None if value is None else _count(value)


def _duration(value: str | int) -> str:
    return _fields.seconds("duration", value)


def _optional_duration(value: str | int | None) -> str | None:
    return None if value is None else _fields.seconds("duration", value)


def _one_of(request: object, *names: str) -> None:
    given = [name for name in names if getattr(request, name) is not None]
    if len(given) != 1:
        raise _fail(
            "/".join(names),
            f"exactly one of {', '.join(names)} is required, got {len(given)}",
        )


@attrs.frozen(kw_only=True)
class _Task:
    """Fields every create takes; ``relax_rules`` is not sent (see ``model_rules``)."""

    callback_url: str | None = attrs.field(
        default=None, validator=_fields.callback, repr=_fields.callback_repr
    )
    external_task_id: str | None = attrs.field(default=None, validator=_fields.text)
    relax_rules: frozenset[str] = attrs.field(factory=frozenset, converter=_fields.rule_names)


@attrs.frozen
class ImageRef:
    """One input image of a list (``image_list[{image}]``): a URL or raw base64."""

    image: str | None = attrs.field(default=None, validator=_required_image)


def _images(field: str, value: object) -> tuple[ImageRef, ...]:
    if value is None:
        raise _fail(field, "is required: a list of 1 to 4 images")
    images = _fields.nested_tuple(ImageRef, field, value, max_items=4)
    if not images:
        raise _fail(field, "needs 1 to 4 images")
    return images


def _image_list(value: Iterable[ImageRef | Mapping[str, Any]] | None) -> tuple[ImageRef, ...]:
    return _images("image_list", value)


def _subject_images(
    value: Iterable[ImageRef | Mapping[str, Any]] | None,
) -> tuple[ImageRef, ...]:
    return _images("subject_image_list", value)


@attrs.frozen(kw_only=True)
class MultiImageToVideo(_Task):
    """A video from up to four reference images (``videos/multi-image2video``; kling-v1-6).

    Examples:
        >>> MultiImageToVideo(image_list=[{"image": "https://x.test/a.png"}], prompt="walk").duration
        '5'
    """

    image_list: tuple[ImageRef, ...] | None = attrs.field(default=None, converter=_image_list)
    prompt: str | None = attrs.field(default=None, validator=_required_text)
    negative_prompt: str | None = attrs.field(default=None, validator=_fields.text)
    model_name: str | None = attrs.field(default=None, validator=_fields.text)
    mode: Mode | None = attrs.field(default=None, validator=_fields.choice(*MODES))
    duration: str = attrs.field(default="5", converter=_duration)
    aspect_ratio: str | None = attrs.field(default=None, validator=_fields.text)
    watermark: bool | None = attrs.field(default=None, validator=_fields.flag)


def _effect_images(value: Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, list | tuple):
        raise _fail("input.images", f"must be a list of 2 images, got {_fields.describe(value)}")
    images = tuple(value)
    if len(images) != 2 or not all(isinstance(item, str) and item.strip() for item in images):
        raise _fail("input.images", "must be 2 images (URLs or raw base64), left then right")
    return images


@attrs.frozen(kw_only=True)
class EffectInput:
    """The ``input`` of a video effect: one ``image`` or two ``images`` (dual-person scenes).

    ``model_name``, ``mode`` and ``duration`` belong to the older body that CometAPI documents.
    """

    image: str | None = attrs.field(default=None, validator=_fields.image)
    images: tuple[str, ...] | None = attrs.field(default=None, converter=_effect_images)
    model_name: str | None = attrs.field(default=None, validator=_fields.text)
    mode: Mode | None = attrs.field(default=None, validator=_fields.choice(*MODES))
    duration: str | None = attrs.field(default=None, converter=_optional_duration)

    def __attrs_post_init__(self) -> None:
        _one_of(self, "image", "images")


def _effect_input(value: EffectInput | Mapping[str, Any] | None) -> EffectInput:
    if value is None:
        raise _fail("input", "is required: an object with image or images")
    return _fields.nested(EffectInput, "input", value)


@attrs.frozen(kw_only=True)
class VideoEffects(_Task):
    """A video effect applied to one or two images (``videos/effects``).

    The scene list changes often (scenes are added and discontinued), so ``effect_scene`` is any
    non-blank name; the server refuses unknown ones.
    """

    effect_scene: str | None = attrs.field(default=None, validator=_required_text)
    input: EffectInput | None = attrs.field(default=None, converter=_effect_input)


@attrs.frozen(kw_only=True)
class LipSyncInput:
    """The ``input`` of the old-form lip-sync: a video, and the words or the sound to sync.

    ``mode="text2video"`` speaks ``text`` (at most 120 characters) in the voice ``voice_id``
    (``voice_language`` ``"zh"`` or ``"en"``, ``voice_speed`` 0.8 to 2.0);
    ``mode="audio2video"`` syncs to a sound: ``audio_type="url"`` with ``audio_url``, or
    ``audio_type="file"`` with ``audio_file`` (raw base64).
    """

    video_id: str | None = attrs.field(default=None, validator=_fields.text)
    video_url: str | None = attrs.field(default=None, validator=_fields.text)
    mode: Literal["text2video", "audio2video"] | None = attrs.field(
        default=None, validator=_fields.choice("text2video", "audio2video")
    )
    text: str | None = attrs.field(default=None, validator=_fields.text)
    voice_id: str | None = attrs.field(default=None, validator=_fields.text)
    voice_language: Literal["zh", "en"] | None = attrs.field(
        default=None, validator=_fields.choice("zh", "en")
    )
    voice_speed: float | None = attrs.field(default=None, validator=_fields.number_in(0.8, 2.0))
    audio_type: Literal["file", "url"] | None = attrs.field(
        default=None, validator=_fields.choice("file", "url")
    )
    audio_file: str | None = attrs.field(default=None, validator=_fields.text)
    audio_url: str | None = attrs.field(default=None, validator=_fields.text)

    def __attrs_post_init__(self) -> None:
        _one_of(self, "video_id", "video_url")
        if self.mode is None:
            raise _fail("mode", 'is required: "text2video" (speak a text) or "audio2video"')
        if self.mode == "text2video":
            for name in ("text", "voice_id"):
                if not getattr(self, name):
                    raise _fail(name, 'is required with mode "text2video"')
            if self.text is not None and len(self.text) > _LIP_SYNC_TEXT_MAX:
                raise _fail("text", f"is longer than {_LIP_SYNC_TEXT_MAX} characters")
            return
        if self.audio_type is None:
            raise _fail("audio_type", 'is required with mode "audio2video": "url" or "file"')
        needed = "audio_url" if self.audio_type == "url" else "audio_file"
        if not getattr(self, needed):
            raise _fail(needed, f'is required with audio_type "{self.audio_type}"')


_LIP_SYNC_TEXT_MAX = 120


def _lip_sync_input(value: LipSyncInput | Mapping[str, Any] | None) -> LipSyncInput:
    if value is None:
        raise _fail("input", "is required: the video and the text or sound to sync")
    return _fields.nested(LipSyncInput, "input", value)


@attrs.frozen(kw_only=True)
class LegacyLipSync(_Task):
    """Lip-sync in its old, one-request form (``videos/lip-sync``, kind ``"lip-sync"``).

    Older Kling docs and CometAPI's older page describe it; Kling's current docs describe the
    two-step [`lip_sync`][kling_async.lipsync.lip_sync] instead. It "belongs to the sub-task":
    send it from the account that made the video.

    Example:
        >>> request = LegacyLipSync(input={"video_id": "v1", "mode": "audio2video",
        ...     "audio_type": "url", "audio_url": "https://example.com/a.mp3"})
        >>> request.input.audio_type
        'url'
    """

    input: LipSyncInput | None = attrs.field(default=None, converter=_lip_sync_input)


@attrs.frozen
class OmniImageRef:
    """An image for omni-video: a reference, or the ``first_frame``/``end_frame``."""

    image_url: str | None = attrs.field(default=None, validator=_required_image)
    type: Literal["first_frame", "end_frame"] | None = attrs.field(
        default=None, validator=_fields.choice("first_frame", "end_frame")
    )


@attrs.frozen
class OmniVideoRef:
    """A video for omni-video: a style/feature reference or the ``base`` to edit."""

    video_url: str | None = attrs.field(default=None, validator=_required_text)
    refer_type: Literal["feature", "base"] | None = attrs.field(
        default=None, validator=_fields.choice("feature", "base")
    )
    keep_original_sound: Literal["yes", "no"] | None = attrs.field(
        default=None, validator=_fields.choice("yes", "no")
    )


def _omni_images(
    value: Iterable[OmniImageRef | Mapping[str, Any]] | None,
) -> tuple[OmniImageRef, ...] | None:
    if value is None:
        return None
    return _fields.nested_tuple(OmniImageRef, "image_list", value, max_items=7)


def _omni_videos(
    value: Iterable[OmniVideoRef | Mapping[str, Any]] | None,
) -> tuple[OmniVideoRef, ...] | None:
    if value is None:
        return None
    return _fields.nested_tuple(OmniVideoRef, "video_list", value, max_items=1)


def _elements(value: Iterable[Element | Mapping[str, Any]] | None) -> tuple[Element, ...] | None:
    if value is None:
        return None
    return _fields.nested_tuple(Element, "element_list", value, max_items=7)


@attrs.frozen(kw_only=True)
class OmniVideo(_Task):
    """An omni-video task (``videos/omni-video``; kling-video-o1, kling-v3-omni).

    Queried at its own path (CometAPI's "Omni Query"). Images, a video and elements are
    referred to from the prompt (``<<<image_1>>>``).
    """

    prompt: str | None = attrs.field(default=None, validator=_required_text)
    model_name: str | None = attrs.field(default=None, validator=_fields.text)
    image_list: tuple[OmniImageRef, ...] | None = attrs.field(default=None, converter=_omni_images)
    video_list: tuple[OmniVideoRef, ...] | None = attrs.field(default=None, converter=_omni_videos)
    element_list: tuple[Element, ...] | None = attrs.field(default=None, converter=_elements)
    mode: Mode | None = attrs.field(default=None, validator=_fields.choice(*MODES))
    duration: str | None = attrs.field(default=None, converter=_optional_duration)
    aspect_ratio: str | None = attrs.field(default=None, validator=_fields.text)
    sound: Literal["on", "off"] | None = attrs.field(
        default=None, validator=_fields.choice("on", "off")
    )
    watermark: bool | None = attrs.field(default=None, validator=_fields.flag)


@attrs.frozen(kw_only=True)
class ImageGeneration(_Task):
    """Images from a prompt, optionally guided by an image (``images/generations``)."""

    prompt: str | None = attrs.field(default=None, validator=_required_text)
    negative_prompt: str | None = attrs.field(default=None, validator=_fields.text)
    model_name: str | None = attrs.field(default=None, validator=_fields.text)
    image: str | None = attrs.field(default=None, validator=_fields.image)
    image_reference: Literal["subject", "face"] | None = attrs.field(
        default=None, validator=_fields.choice("subject", "face")
    )
    image_fidelity: float | None = attrs.field(default=None, validator=_fields.number_in(0, 1))
    human_fidelity: float | None = attrs.field(default=None, validator=_fields.number_in(0, 1))
    resolution: Literal["1k", "2k"] | None = attrs.field(
        default=None, validator=_fields.choice("1k", "2k")
    )
    n: int | None = attrs.field(default=None, converter=_optional_count)
    aspect_ratio: str | None = attrs.field(
        default=None, validator=_fields.choice(*IMAGE_ASPECT_RATIOS)
    )
    element_list: tuple[Element, ...] | None = attrs.field(default=None, converter=_elements)
    watermark: bool | None = attrs.field(default=None, validator=_fields.flag)


@attrs.frozen(kw_only=True)
class VirtualTryOn(_Task):
    """A person wearing a garment (``images/kolors-virtual-try-on``)."""

    human_image: str | None = attrs.field(default=None, validator=_required_image)
    cloth_image: str | None = attrs.field(default=None, validator=_required_image)
    model_name: str | None = attrs.field(default=None, validator=_fields.text)


_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


def _seconds_number(value: float | str) -> float | str:
    # A CSV cell or a JSON string "4.5" means 4.5; anything else is left for the range check.
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value)
    return value


@attrs.frozen(kw_only=True)
class TextToAudio(_Task):
    """A sound effect or music from a prompt (``audio/text-to-audio``); 3 to 10 seconds."""

    prompt: str | None = attrs.field(default=None, validator=_required_text)
    duration: float = attrs.field(
        default=5, converter=_seconds_number, validator=_fields.number_in(3, 10)
    )


@attrs.frozen(kw_only=True)
class VideoToAudio(_Task):
    """A sound track for a video (``audio/video-to-audio``): a Kling ``video_id`` or a URL."""

    video_id: str | None = attrs.field(default=None, validator=_fields.text)
    video_url: str | None = attrs.field(default=None, validator=_fields.text)
    sound_effect_prompt: str | None = attrs.field(default=None, validator=_fields.text)
    bgm_prompt: str | None = attrs.field(default=None, validator=_fields.text)
    asmr_mode: bool | None = attrs.field(default=None, validator=_fields.flag)

    def __attrs_post_init__(self) -> None:
        _one_of(self, "video_id", "video_url")


@attrs.frozen(kw_only=True)
class AvatarImageToVideo(_Task):
    """A talking avatar from a portrait and speech (``videos/avatar/image2video``)."""

    image: str | None = attrs.field(default=None, validator=_required_image)
    audio_id: str | None = attrs.field(default=None, validator=_fields.text)
    sound_file: str | None = attrs.field(default=None, validator=_fields.text)
    prompt: str | None = attrs.field(default=None, validator=_fields.text)
    mode: Mode | None = attrs.field(default=None, validator=_fields.choice(*MODES))

    def __attrs_post_init__(self) -> None:
        _one_of(self, "audio_id", "sound_file")


@attrs.frozen(kw_only=True)
class VideoExtend(_Task):
    """Four to five more seconds of a Kling video (``videos/video-extend``; v1.x videos only).

    ``task_id`` is the parent task, which CometAPI's newer page asks for; Kling does not.
    """

    video_id: str | None = attrs.field(default=None, validator=_required_text)
    task_id: str | None = attrs.field(default=None, validator=_fields.text)
    prompt: str | None = attrs.field(default=None, validator=_fields.text)
    negative_prompt: str | None = attrs.field(default=None, validator=_fields.text)
    cfg_scale: float | None = attrs.field(default=None, validator=_fields.number_in(0, 1))


_RATIO = _fields.number_in(0, 2)


@attrs.frozen(kw_only=True)
class ImageExpand(_Task):
    """An image extended beyond its borders (``images/editing/expand``; Kling direct).

    Each ratio is how far to extend that side, relative to the image (0 to 2).
    """

    image: str | None = attrs.field(default=None, validator=_required_image)
    up_expansion_ratio: float | None = attrs.field(default=None, validator=_RATIO)
    down_expansion_ratio: float | None = attrs.field(default=None, validator=_RATIO)
    left_expansion_ratio: float | None = attrs.field(default=None, validator=_RATIO)
    right_expansion_ratio: float | None = attrs.field(default=None, validator=_RATIO)
    prompt: str | None = attrs.field(default=None, validator=_fields.text)
    n: int | None = attrs.field(default=None, converter=_optional_count)


def _optional_image_list(
    value: Iterable[ImageRef | Mapping[str, Any]] | None,
) -> tuple[ImageRef, ...] | None:
    return None if value is None else _image_list(value)


@attrs.frozen(kw_only=True)
class OmniImage(_Task):
    """Images from a prompt and reference images (``images/omni-image``; Kling direct)."""

    prompt: str | None = attrs.field(default=None, validator=_required_text)
    model_name: str | None = attrs.field(default=None, validator=_fields.text)
    image_list: tuple[ImageRef, ...] | None = attrs.field(
        default=None, converter=_optional_image_list
    )
    resolution: Literal["1k", "2k"] | None = attrs.field(
        default=None, validator=_fields.choice("1k", "2k")
    )
    n: int | None = attrs.field(default=None, converter=_optional_count)
    aspect_ratio: str | None = attrs.field(
        default=None, validator=_fields.choice(*IMAGE_ASPECT_RATIOS)
    )


@attrs.frozen(kw_only=True)
class MultiImageToImage(_Task):
    """An image from subject, scene and style images (``images/multi-image2image``; Kling direct)."""

    prompt: str | None = attrs.field(default=None, validator=_required_text)
    subject_image_list: tuple[ImageRef, ...] | None = attrs.field(
        default=None, converter=_subject_images
    )
    model_name: str | None = attrs.field(default=None, validator=_fields.text)
    scene_image: str | None = attrs.field(default=None, validator=_fields.image)
    style_image: str | None = attrs.field(default=None, validator=_fields.image)
    n: int | None = attrs.field(default=None, converter=_optional_count)
    aspect_ratio: str | None = attrs.field(
        default=None, validator=_fields.choice(*IMAGE_ASPECT_RATIOS)
    )


@attrs.frozen(kw_only=True)
class MotionControl(_Task):
    """The character of an image performing the moves of a video (``videos/motion-control``;
    kling-v2-6, kling-v3; Kling direct).

    ``character_orientation`` says whose facing to follow: the ``image``'s (reference video up to
    10 s) or the ``video``'s (up to 30 s). Fields come from gateways' copies of Kling's page.
    """

    image_url: str | None = attrs.field(default=None, validator=_required_image)
    video_url: str | None = attrs.field(default=None, validator=_required_text)
    character_orientation: Literal["image", "video"] | None = attrs.field(
        default=None, validator=_fields.choice("image", "video")
    )
    mode: Mode | None = attrs.field(default=None, validator=_fields.choice(*MODES))
    model_name: str | None = attrs.field(default=None, validator=_fields.text)
    prompt: str | None = attrs.field(default=None, validator=_fields.text)
    keep_original_sound: Literal["yes", "no"] | None = attrs.field(
        default=None, validator=_fields.choice("yes", "no")
    )
    element_list: tuple[Element, ...] | None = attrs.field(default=None, converter=_elements)
    watermark: bool | None = attrs.field(default=None, validator=_fields.flag)

    def __attrs_post_init__(self) -> None:
        if self.character_orientation is None:
            raise _fail("character_orientation", "is required: 'image' or 'video'")
