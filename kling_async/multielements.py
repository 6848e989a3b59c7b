"""Multi-elements editing as one call: add, swap or remove things in a video.

Kling's flow is a session of synchronous requests, then a task: ``init-selection`` (the video;
answers a ``session_id`` valid 24 hours), ``add-selection`` once per marked frame (points in
``[0, 1]`` from the top-left corner), then ``POST videos/multi-elements`` (kling-v1-6). The
session's ``delete-selection``, ``clear-selection`` and ``preview-selection`` exist for
interactive use; [`edit_elements`][kling_async.multielements.edit_elements] takes the marks up front, so it needs none of them.

Examples:
    >>> edit = ElementEdit(
    ...     video_id="v1",
    ...     edit_mode="removal",
    ...     prompt="Remove the selected object from <<<video_1>>>",
    ...     selections=[{"frame_index": 0, "points": [{"x": 0.5, "y": 0.5}]}],
    ... )
    >>> edit.selections[0].points[0].x
    0.5
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from . import _fields
from .errors import ResponseParseError
from .models import MODES, Mode
from .requests import ImageRef

if TYPE_CHECKING:
    from .client import KlingClient
    from .models import Task

__all__ = ["ElementEdit", "MultiElements", "Point", "Selection", "edit_elements"]

INIT_PATH = "videos/multi-elements/init-selection"
ADD_PATH = "videos/multi-elements/add-selection"
_EDIT_MODES = ("addition", "swap", "removal")
_UNIT = _fields.number_in(0, 1)


@attrs.frozen
class Point:
    """A point on a frame, as fractions of its width and height (``0, 0`` is top-left)."""

    x: float = attrs.field(validator=_UNIT)
    y: float = attrs.field(validator=_UNIT)


def _points(value: Iterable[Point | Mapping[str, float]]) -> tuple[Point, ...]:
    points = _fields.nested_tuple(Point, "points", value, max_items=10)
    if not points:
        raise _fields.fail("points", "needs 1 to 10 points")
    return points


def _frame(value: int) -> int:
    return _fields.whole_number("frame_index", value)


@attrs.frozen
class Selection:
    """The points that mark an element on one frame (``add-selection``)."""

    frame_index: int = attrs.field(converter=_frame)
    points: tuple[Point, ...] = attrs.field(converter=_points)


def _selections(
    value: Iterable[Selection | Mapping[str, Any]] | None,
) -> tuple[Selection, ...] | None:
    if value is None:
        return None
    return _fields.nested_tuple(Selection, "selections", value, max_items=10)


def _image_refs(
    value: Iterable[ImageRef | Mapping[str, Any]] | None,
) -> tuple[ImageRef, ...] | None:
    if value is None:
        return None
    return _fields.nested_tuple(ImageRef, "image_list", value, max_items=4)


def _optional_duration(value: str | int | None) -> str | None:
    return None if value is None else _fields.seconds("duration", value)


def _required_text(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _fields.fail(attribute.name, f"is required text, got {_fields.describe(value)}")


def _check_images(edit_mode: str | None, images: tuple[ImageRef, ...] | None) -> None:
    if edit_mode in ("addition", "swap") and not images:
        raise _fields.fail("image_list", f"is required for edit_mode {edit_mode!r}")
    if edit_mode == "removal" and images is not None:
        raise _fields.fail("image_list", "must be omitted for edit_mode 'removal'")


@attrs.frozen(kw_only=True)
class MultiElements:
    """The final step (``videos/multi-elements``); [`edit_elements`][kling_async.multielements.edit_elements] builds it for you."""

    session_id: str | None = attrs.field(default=None, validator=_required_text)
    edit_mode: Literal["addition", "swap", "removal"] | None = attrs.field(
        default=None, validator=_fields.choice(*_EDIT_MODES)
    )
    prompt: str | None = attrs.field(default=None, validator=_required_text)
    image_list: tuple[ImageRef, ...] | None = attrs.field(default=None, converter=_image_refs)
    negative_prompt: str | None = attrs.field(default=None, validator=_fields.text)
    model_name: str | None = attrs.field(default=None, validator=_fields.text)
    mode: Mode | None = attrs.field(default=None, validator=_fields.choice(*MODES))
    duration: str | None = attrs.field(default=None, converter=_optional_duration)
    callback_url: str | None = attrs.field(
        default=None, validator=_fields.callback, repr=_fields.callback_repr
    )
    external_task_id: str | None = attrs.field(default=None, validator=_fields.text)
    relax_rules: frozenset[str] = attrs.field(factory=frozenset, converter=_fields.rule_names)

    def __attrs_post_init__(self) -> None:
        if self.edit_mode is None:
            raise _fields.fail("edit_mode", "is required: 'addition', 'swap' or 'removal'")
        _check_images(self.edit_mode, self.image_list)


@attrs.frozen(kw_only=True)
class ElementEdit:
    """What to edit: a video (Kling ``video_id`` or ``video_url``), the marked element
    (``selections``: needed to swap or remove), what to do and with which images."""

    video_id: str | None = attrs.field(default=None, validator=_fields.text)
    video_url: str | None = attrs.field(default=None, validator=_fields.text)
    edit_mode: Literal["addition", "swap", "removal"] | None = attrs.field(
        default=None, validator=_fields.choice(*_EDIT_MODES)
    )
    prompt: str | None = attrs.field(default=None, validator=_required_text)
    selections: tuple[Selection, ...] | None = attrs.field(default=None, converter=_selections)
    image_list: tuple[ImageRef, ...] | None = attrs.field(default=None, converter=_image_refs)
    negative_prompt: str | None = attrs.field(default=None, validator=_fields.text)
    model_name: str | None = attrs.field(default=None, validator=_fields.text)
    mode: Mode | None = attrs.field(default=None, validator=_fields.choice(*MODES))
    duration: str | None = attrs.field(default=None, converter=_optional_duration)
    callback_url: str | None = attrs.field(
        default=None, validator=_fields.callback, repr=_fields.callback_repr
    )
    external_task_id: str | None = attrs.field(default=None, validator=_fields.text)

    def __attrs_post_init__(self) -> None:
        if (self.video_id is None) == (self.video_url is None):
            raise _fields.fail("video_id/video_url", "exactly one of video_id, video_url")
        if self.edit_mode is None:
            raise _fields.fail("edit_mode", "is required: 'addition', 'swap' or 'removal'")
        if self.edit_mode in ("swap", "removal") and not self.selections:
            raise _fields.fail("selections", f"mark the element to {self.edit_mode} first")
        _check_images(self.edit_mode, self.image_list)


def _session(data: Any) -> str:
    session = data.get("session_id") if isinstance(data, Mapping) else None
    if not isinstance(session, str) or not session:
        raise ResponseParseError("init-selection answered no session_id", where=INIT_PATH)
    return session


async def edit_elements(client: KlingClient, edit: ElementEdit) -> Task:
    """Open a session on the video, mark each selection, then create the editing task.

    Returns:
        The task (kind ``multi-elements``), to [`wait`][kling_async.client.KlingClient.wait] for.

    Raises:
        ResponseParseError: init-selection answered no session.
        APIError: any of the requests failed (the server refuses points it cannot segment).
    """
    video = (
        {"video_id": edit.video_id} if edit.video_id is not None else {"video_url": edit.video_url}
    )
    session = _session(await client._call("POST", INIT_PATH, json=video))
    for selection in edit.selections or ():
        body = {
            "session_id": session,
            "frame_index": selection.frame_index,
            "points": [{"x": point.x, "y": point.y} for point in selection.points],
        }
        await client._call("POST", ADD_PATH, json=body)
    return await client.submit(
        MultiElements(session_id=session, **_fields.carried(edit, MultiElements))
    )
