"""The new-api dialect: the emulator answering as the open-source new-api gateway's Kling relay.

Modelled on new-api's source (``relay/relay_task.go``, ``relay/channel/task/kling/adaptor.go``,
``service/task_polling.go``, ``model/task.go``), written apart from the client's wire code:

* a create answers the bare task object ``{"id", "task_id", "object": "video", "model",
  "status": "queued", "progress": 0, "created_at"}`` with the gateway's own id ``task_<32 hex>``;
* a query answers ``{"code": "success", "data": TaskDto}`` whose ``data`` holds the whole upstream
  envelope, and whose status lags: the gateway polls the upstream every
  ``NewApiRelay.poll_interval`` seconds of server clock;
* upstream errors are relayed as ``{"code": "fail_to_fetch_task", "message": "<upstream JSON>"}``
  with the upstream's status, every 429 with one fixed "upstream saturated" message, an upstream
  200 carrying an error code as 400 ``task_failed``; an unknown id is 400 ``task_not_exist``;
* a create without ``model_name`` is refused in the OpenAI-style ``{"error": ...}`` shape; a missing
  ``aspect_ratio`` becomes 1:1, and ``multi_shot``/``shot_type``/``multi_prompt``/``sound`` are
  dropped before the upstream sees the body;
* there is no list route, and no look-up by external id.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ._http import JsonReply
from ._tasks import FakeTask, render_task

__all__ = ["DROPPED_FIELDS", "SATURATED", "NewApiRelay"]

SATURATED = "当前分组上游负载已饱和，请稍后再试"  # noqa: RUF001 - the exact bytes new-api sends
"""new-api's message for every upstream 429 ("this group's upstream is saturated, try later")."""

DROPPED_FIELDS = ("multi_shot", "shot_type", "multi_prompt", "sound")
"""Create fields the relay does not forward."""

_STATUS = {
    "submitted": "SUBMITTED",
    "processing": "IN_PROGRESS",
    "succeed": "SUCCESS",
    "failed": "FAILURE",
}

Stamp = Callable[[float], int]


class GatewayReply(JsonReply):
    """An answer the gateway wrote itself (not to be relayed again)."""


class NewApiRelay:
    """Rewrites the emulator's Kling answers the way new-api's relay does.

    Attributes:
        poll_interval: seconds of server clock between the gateway's polls of the upstream.
        upstream_200_errors: the upstream answers business errors with HTTP 200 (the relay then
            turns them into 400 ``task_failed``).
    """

    def __init__(
        self, *, poll_interval: float, upstream_200_errors: bool = False, seed: int = 0
    ) -> None:
        self.poll_interval = poll_interval
        self.upstream_200_errors = upstream_200_errors
        self._rng = random.Random(seed)
        self._upstream: dict[str, str] = {}
        self._public: dict[str, str] = {}

    def public_id(self, upstream_id: str) -> str:
        """The gateway's id for an upstream task (minted on first sight)."""
        known = self._public.get(upstream_id)
        if known is None:
            known = f"task_{uuid.UUID(int=self._rng.getrandbits(128)).hex}"
            self._public[upstream_id] = known
            self._upstream[known] = upstream_id
        return known

    def upstream_id(self, public_id: str) -> str | None:
        """The upstream task behind a gateway id, if any."""
        return self._upstream.get(public_id)

    # -- requests in -----------------------------------------------------------------------

    def incoming_create(self, body: dict[str, Any]) -> web.Response | None:
        """Refuse a create the gateway would refuse, else adjust its body in place."""
        model = body.get("model_name") or body.get("model")
        if not isinstance(model, str) or not model:
            request_id = uuid.uuid4().hex
            return GatewayReply(
                400,
                {
                    "error": {
                        "message": f"Model name not specified (request id: {request_id})",
                        "type": "new_api_error",
                        "param": "",
                        "code": None,
                    }
                },
                0,
            )
        body.setdefault("aspect_ratio", "1:1")
        for field in DROPPED_FIELDS:
            body.pop(field, None)
        return None

    # -- answers out -----------------------------------------------------------------------

    def created(self, task: FakeTask, seconds: Stamp) -> web.Response:
        """The bare task object new-api answers a create with."""
        public = self.public_id(task.task_id)
        return GatewayReply(
            200,
            {
                "id": public,
                "task_id": public,
                "object": "video",
                "model": task.body.get("model_name") or task.body.get("model"),
                "status": "queued",
                "progress": 0,
                "created_at": seconds(task.created),
            },
            0,
        )

    def queried(
        self, task: FakeTask, now: float, cdn_url: str, stamp: Stamp, seconds: Stamp
    ) -> web.Response:
        """The gateway's stored record of *task*, as of its last poll of the upstream."""
        polls = math.floor(max(0.0, now - task.created) / self.poll_interval)
        seen_at = task.created + polls * self.poll_interval
        if task.forced_status is not None:
            seen_at = now  # a test forced a status: the gateway has "seen" it
        upstream = render_task(task, seen_at, cdn_url, stamp)
        status = upstream["task_status"]
        envelope = {
            "code": 0,
            "message": "SUCCEED",
            "request_id": str(uuid.UUID(int=self._rng.getrandbits(128))),
            "data": upstream,
        }
        videos = upstream["task_result"]["videos"]
        record = {
            "task_id": self.public_id(task.task_id),
            "action": task.kind.action,
            "status": "NOT_START" if polls == 0 and status == "submitted" else _STATUS[status],
            "fail_reason": upstream["task_status_msg"] if status == "failed" else "",
            "submit_time": seconds(task.created),
            "start_time": seconds(task.processing_at) if status != "submitted" else 0,
            "finish_time": seconds(task.finished_at) if status in ("succeed", "failed") else 0,
            "progress": f"{task.progress_at(seen_at)}%",
            "result_url": videos[0]["url"] if videos else "",
            "data": envelope,
        }
        return GatewayReply(200, {"code": "success", "message": "", "data": record}, 0)

    def not_found(self) -> web.Response:
        """An unknown gateway id."""
        return GatewayReply(
            400, {"code": "task_not_exist", "message": "task_not_exist", "data": None}, 0
        )

    def relay(self, response: web.StreamResponse) -> web.StreamResponse:
        """Relay an upstream error answer as new-api does; anything else passes through."""
        if isinstance(response, GatewayReply) or not isinstance(response, JsonReply):
            return response
        if response.kling_code == 0:
            return response
        text = response.text or ""
        if text.startswith('{"error"'):
            return response  # the gateway's own error (authentication), not the upstream's
        status = response.status
        if status == 429:
            body = {"code": "fail_to_fetch_task", "message": SATURATED, "data": None}
        elif self.upstream_200_errors and status < 500:
            message = json.loads(text).get("message", "")
            return GatewayReply(
                400, {"code": "task_failed", "message": message, "data": None}, response.kling_code
            )
        else:
            body = {"code": "fail_to_fetch_task", "message": text, "data": None}
        return GatewayReply(status, body, response.kling_code)
