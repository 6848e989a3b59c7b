"""Stored tasks of the emulator and their wire renderings."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import attrs

from ._kinds import KindSpec

__all__ = [
    "ACTIVE_STATUSES",
    "FakeTask",
    "Status",
    "render_new_style",
    "render_task",
    "render_wrapped",
]

Status = Literal["submitted", "processing", "succeed", "failed"]
"""Legacy task statuses (note ``succeed``, not ``succeeded``)."""

ACTIVE_STATUSES: frozenset[Status] = frozenset({"submitted", "processing"})
"""Statuses that hold a task slot."""

Stamp = Callable[[float], int]
"""Converts a server-clock reading into a wire timestamp (ms or s)."""


@attrs.define(eq=False)
class FakeTask:
    """A task as the emulator stores it; its status is computed from the server clock."""

    task_id: str
    """18-digit numeric id."""
    kind: KindSpec
    """Kind that created it (it is only found under that kind's path)."""
    seq: int
    """Creation order, for stable most-recent-first listing."""
    body: dict[str, Any]
    """The create body as received."""
    external_task_id: str | None
    """Caller-chosen id, unique per account."""
    callback_url: str | None
    """Where status changes are posted."""
    created: float
    """Server clock at creation."""
    video_id: str
    """Id of the video a success produces."""
    processing_at: float = math.inf
    """Server clock when it becomes ``processing``."""
    finished_at: float = math.inf
    """Server clock when it reaches [`outcome`][kling_async.testing.FakeTask.outcome]."""
    outcome: Status = "succeed"
    """Terminal status the timeline leads to."""
    outcome_message: str = ""
    """``task_status_msg`` once the timeline finished."""
    url_version: int = 1
    """Bumped by ``expire_video_urls``; older URLs are refused."""
    forced_status: Status | None = None
    """Set by ``set_status``; overrides the timeline."""
    forced_message: str | None = None
    """``task_status_msg`` with [`forced_status`][kling_async.testing.FakeTask.forced_status]."""
    forced_at: float = 0.0
    """Server clock of the last ``set_status``."""
    last_notified: Status | None = None
    """Last status a callback was fired for."""
    standard: bool = False
    """Created through the new-standard API (its callbacks use the new-style body, §5.3)."""

    def status_at(self, now: float) -> Status:
        """The status at server-clock time *now*."""
        if self.forced_status is not None:
            return self.forced_status
        if now < self.processing_at:
            return "submitted"
        if now < self.finished_at:
            return "processing"
        return self.outcome

    def changed_at(self, now: float) -> float:
        """Server clock of the last status change as of *now* (the wire ``updated_at``)."""
        if self.forced_status is not None:
            return self.forced_at
        if now < self.processing_at:
            return self.created
        if now < self.finished_at:
            return self.processing_at
        return self.finished_at

    def message_at(self, now: float) -> str:
        """``task_status_msg`` at *now*."""
        if self.forced_status is not None:
            return self.forced_message or ""
        return self.outcome_message if self.status_at(now) == "failed" else ""

    def progress_at(self, now: float) -> int:
        """A gateway-style percentage."""
        status = self.status_at(now)
        if status == "submitted":
            return 0
        if status != "processing":
            return 100
        span = self.finished_at - self.processing_at
        if self.forced_status is not None or not math.isfinite(span) or span <= 0:
            return 50
        return min(99, 10 + int(89 * (now - self.processing_at) / span))

    def video_duration(self) -> str:
        """The produced video's length, in Kling's fractional-string form."""
        requested = self.body.get("duration")
        seconds = requested if isinstance(requested, str) and requested.isdigit() else "5"
        return f"{seconds}.042"

    def unit_deduction(self) -> str:
        """Units a success costs: pro and 10 s each double it."""
        units = 1.0
        if self.body.get("mode") == "pro":
            units *= 2
        if self.body.get("duration") == "10":
            units *= 2
        return f"{units:g}"

    def video_urls(self, cdn_url: str) -> tuple[str, str]:
        """Current (url, watermark_url); a version token marks URLs re-issued after expiry."""
        token = "" if self.url_version == 1 else f"?v={self.url_version}"
        base = f"{cdn_url}/videos/{self.video_id}"
        return f"{base}.mp4{token}", f"{base}-wm.mp4{token}"


def _image_count(task: FakeTask) -> int:
    count = task.body.get("n", 1)
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1


def result_entries(task: FakeTask, cdn_url: str) -> list[dict[str, Any]]:
    """A succeeded task's results, shaped as its kind's ``task_result`` lists them (§1.6)."""
    token = "" if task.url_version == 1 else f"?v={task.url_version}"
    base = f"{cdn_url}/videos/{task.video_id}"
    if task.kind.results == "images":
        return [
            {
                "index": index,
                "url": f"{base}-{index}.png{token}",
                "watermark_url": f"{base}-{index}-wm.png{token}",
            }
            for index in range(_image_count(task))
        ]
    if task.kind.results == "audios":
        seconds = task.body.get("duration", 5)
        return [
            {
                "id": task.video_id,
                "url_mp3": f"{base}.mp3{token}",
                "url_wav": f"{base}.wav{token}",
                "duration_mp3": str(seconds),
                "duration_wav": str(seconds),
            }
        ]
    url, watermark_url = task.video_urls(cdn_url)
    return [
        {
            "id": task.video_id,
            "url": url,
            "watermark_url": watermark_url,
            "duration": task.video_duration(),
        }
    ]


def render_task(task: FakeTask, now: float, cdn_url: str, stamp: Stamp) -> dict[str, Any]:
    """The legacy task object of kling-api.md §1.6 (also the legacy callback body, §5.2)."""
    status = task.status_at(now)
    results = result_entries(task, cdn_url) if status == "succeed" else []
    info: dict[str, Any] = {}
    if task.external_task_id is not None:
        info["external_task_id"] = task.external_task_id
    watermark = task.body.get("watermark_info")
    return {
        "task_id": task.task_id,
        "task_status": status,
        "task_status_msg": task.message_at(now),
        "task_info": info,
        "task_result": {task.kind.results: results},
        "watermark_info": {
            "enabled": bool(isinstance(watermark, dict) and watermark.get("enabled"))
        },
        "final_unit_deduction": task.unit_deduction() if status == "succeed" else "0",
        "created_at": stamp(task.created),
        "updated_at": stamp(task.changed_at(now)),
    }


_NEW_STATUS = {
    "submitted": "submitted",
    "processing": "processing",
    "succeed": "succeeded",
    "failed": "failed",
}


def render_new_style(task: FakeTask, now: float, cdn_url: str, stamp: Stamp) -> dict[str, Any]:
    """The new-standard callback body of kling-api.md §5.3."""
    status = task.status_at(now)
    outputs: list[dict[str, Any]] = []
    if status == "succeed":
        output_type = task.kind.results.removesuffix("s")
        outputs = [{"type": output_type, **entry} for entry in result_entries(task, cdn_url)]
    return {
        "id": task.task_id,
        "status": _NEW_STATUS[status],
        "message": task.message_at(now),
        "create_time": stamp(task.created),
        "update_time": stamp(task.changed_at(now)),
        "external_id": task.external_task_id or "",
        "outputs": outputs,
        "billing": [],
    }


_GATEWAY_STATUS = {
    "submitted": "SUBMITTED",
    "processing": "IN_PROGRESS",
    "succeed": "SUCCESS",
    "failed": "FAILURE",
}


def render_wrapped(task: FakeTask, now: float, cdn_url: str, stamp: Stamp) -> dict[str, Any]:
    """The gateway-wrapped single-query body of kling-api.md §2.4 (new-api ``TaskResponse``)."""
    status = task.status_at(now)
    started = (
        stamp(task.processing_at)
        if status != "submitted" and math.isfinite(task.processing_at)
        else 0
    )
    finished = stamp(task.changed_at(now)) if status in ("succeed", "failed") else 0
    return {
        "code": "success",
        "message": "",
        "data": {
            "task_id": task.task_id,
            "action": task.kind.action,
            "status": _GATEWAY_STATUS[status],
            "fail_reason": task.message_at(now) if status == "failed" else "",
            "submit_time": stamp(task.created),
            "start_time": started,
            "finish_time": finished,
            "progress": f"{task.progress_at(now)}%",
            "data": render_task(task, now, cdn_url, stamp),
        },
    }
