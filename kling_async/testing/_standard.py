"""The emulator's new-standard API (kling-api.md §1.3): model in the path, one ``/tasks`` query.

Served beside the legacy paths, at the host's root, by the Kling dialect only (CometAPI and
new-api document none of it):

* ``POST /<product>/<model>`` with ``{contents, settings, options}``, for text-to-video,
  image-to-video and motion-control; the body is read back into the legacy fields and checked by
  the same per-kind rules, so a bad request gets the same 1201 words either way;
* ``GET /tasks?task_ids=a,b`` or ``?external_task_ids=...`` (not both), answered as
  ``{"result": [<item>, ...]}`` of new-style items (``status: "succeeded"``, ``outputs``);
* ``POST /tasks``: the cursor list (``cursor``, ``limit`` up to 500, ``filters`` on ``status``
  and ``product_type``), answered as ``{"result": [...], "next_cursor": ...}``;
* an API key only: a JWT made from access keys is refused (401, 1002);
* ``GET /account/costs`` (start_time and end_time in ms required; QPS <= 1, else 429/1302):
  one video resource pack that succeeded tasks use up.

This is parsed here on its own, not with the library's translation, so that the two can
disagree in a test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._kinds import KindSpec
from ._tasks import FakeTask, render_new_style

__all__ = ["PRODUCT_KINDS", "STANDARD_MODELS", "StandardSite"]

PRODUCT_KINDS: Mapping[str, str] = {
    "text-to-video": "text2video",
    "image-to-video": "image2video",
    "motion-control": "motion-control",
}
"""New-standard product path -> the emulator's task kind."""

STANDARD_MODELS: Mapping[str, str] = {
    "kling-3.0": "kling-v3",
    "kling-3.0-omni": "kling-v3-omni",
    "kling-2.6": "kling-v2-6",
    "kling-2.5-turbo": "kling-v2-5-turbo",
}
"""Models the new API serves (updates log, 07/15/2026), with their legacy names."""

_RESOLUTION_MODES = {"720p": "std", "1080p": "pro", "4k": "4k"}
_AUDIO_SOUND = {"native": "on", "off": "off"}
_LIST_MAX = 500


class StandardSite:
    """Mixin of the emulator serving the new-standard routes (see the module docs)."""

    api_key: str | None
    kinds: tuple[KindSpec, ...]
    resource_pack_units: float
    _account_asked_at: float | None
    _tasks: dict[str, FakeTask]
    _by_external: dict[str, FakeTask]
    clock: Callable[[], float]

    if TYPE_CHECKING:

        @property
        def cdn_url(self) -> str: ...

        def _stamp(self, clock_value: float) -> int: ...

        def _ok(self, data: Any) -> web.Response: ...

        def _error(self, status: int, code: int, message: str) -> web.Response: ...

        def _create_task(self, kind: KindSpec, body: dict[str, Any]) -> FakeTask | web.Response: ...

    def _api_key_only(self, request: web.Request) -> web.Response | None:
        """Refuse anything but the API key (already authenticated by the pipeline)."""
        token = request.headers.get("Authorization", "").partition(" ")[2].strip()
        if self.api_key is None or token != self.api_key:
            return self._error(401, 1002, "Authorization is invalid: this API takes an API key")
        return None

    async def _standard_create(self, request: web.Request, _: KindSpec) -> web.StreamResponse:
        denied = self._api_key_only(request)
        if denied is not None:
            return denied
        product, model = request.match_info["product"], request.match_info["model"]
        kind_name = PRODUCT_KINDS.get(product)
        kind = next((spec for spec in self.kinds if spec.name == kind_name), None)
        if kind is None:
            return self._error(404, 1202, "Requested method invalid")
        legacy_model = STANDARD_MODELS.get(model)
        if legacy_model is None:
            return self._error(400, 1201, f"model {model!r} is not supported by {product}")
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, 1200, "Invalid request parameters: body is not valid JSON")
        try:
            legacy = _legacy_body(body, legacy_model, kind.name)
        except ValueError as exc:
            return self._error(400, 1201, f"Invalid request parameters: {exc}")
        task = self._create_task(kind, legacy)
        if not isinstance(task, FakeTask):
            return task
        task.standard = True
        return self._ok(render_new_style(task, self.clock(), self.cdn_url, self._stamp))

    async def _standard_query(self, request: web.Request, _: KindSpec) -> web.StreamResponse:
        denied = self._api_key_only(request)
        if denied is not None:
            return denied
        ids, externals = request.query.get("task_ids"), request.query.get("external_task_ids")
        if (ids is None) == (externals is None):
            return self._error(
                400, 1201, "exactly one of task_ids and external_task_ids is required"
            )
        store = self._tasks if ids is not None else self._by_external
        wanted = [ident for ident in (ids or externals or "").split(",") if ident]
        now = self.clock()
        found = [store[ident] for ident in dict.fromkeys(wanted) if ident in store]
        items = [render_new_style(task, now, self.cdn_url, self._stamp) for task in found]
        return self._ok({"result": items})

    async def _account_costs(self, request: web.Request, _: KindSpec) -> web.StreamResponse:
        """``GET /account/costs``: one video pack, used up by succeeded tasks; QPS <= 1."""
        now = self.clock()
        last = self._account_asked_at
        if last is not None and now - last < 1.0:
            return self._error(429, 1302, "Request too fast, exceeds rate limit (QPS<=1)")
        self._account_asked_at = now  # only answered calls count towards the limit
        for name in ("start_time", "end_time"):
            if not request.query.get(name, "").isdigit():
                return self._error(400, 1201, f"{name}: required, a Unix time in milliseconds")
        used = sum(
            float(task.unit_deduction())
            for task in self._tasks.values()
            if task.status_at(now) == "succeed"
        )
        total = self.resource_pack_units
        remaining = max(0.0, total - used)
        pack = {
            "resource_pack_name": f"Video Generation - {total:g} units",
            "resource_pack_id": "rp-emulated-1",
            "resource_pack_type": "decreasing_total",
            "total_quantity": total,
            "remaining_quantity": remaining,
            "purchase_time": self._stamp(0.0),
            "effective_time": self._stamp(0.0),
            "invalid_time": self._stamp(365 * 86400.0),
            "status": "online" if remaining > 0 else "runOut",
        }
        return self._ok({"code": 0, "msg": "", "resource_pack_subscribe_infos": [pack]})

    async def _standard_list(self, request: web.Request, _: KindSpec) -> web.StreamResponse:
        denied = self._api_key_only(request)
        if denied is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        limit, cursor = body.get("limit", 100), body.get("cursor") or "0"
        if not isinstance(limit, int) or not 1 <= limit <= _LIST_MAX:
            return self._error(400, 1201, f"limit: must be between 1 and {_LIST_MAX}")
        if not str(cursor).isdigit():
            return self._error(400, 1201, "cursor: not a cursor this API returned")
        now = self.clock()
        items = [
            render_new_style(task, now, self.cdn_url, self._stamp)
            for task in sorted(self._tasks.values(), key=lambda task: task.seq, reverse=True)
        ]
        items = [item for item in items if _passes(item, body.get("filters"), self._tasks)]
        start = int(cursor)
        page = items[start : start + limit]
        more = start + limit < len(items)
        return self._ok({"result": page, "next_cursor": str(start + limit) if more else ""})


def _passes(item: Mapping[str, Any], filters: Any, tasks: Mapping[str, FakeTask]) -> bool:
    if not isinstance(filters, list):
        return True
    for entry in filters:
        if not isinstance(entry, dict):
            continue
        values = entry.get("values") or []
        if entry.get("key") == "status" and item["status"] not in values:
            return False
        if entry.get("key") == "product_type":
            kind = tasks[item["id"]].kind.name
            products = {product for product, name in PRODUCT_KINDS.items() if name == kind}
            if not products & set(values):
                return False
    return True


def _legacy_body(body: Any, model: str, kind_name: str) -> dict[str, Any]:
    """The legacy create fields that a new-standard *body* asks for (ValueError if malformed)."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    unknown = sorted(set(body) - {"contents", "settings", "options"})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    legacy: dict[str, Any] = {"model_name": model}
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ValueError("contents must be a non-empty list")
    for entry in contents:
        if not isinstance(entry, dict):
            raise ValueError("contents entries must be objects")
        kind = entry.get("type")
        if kind == "text":
            legacy["prompt"] = entry.get("text")
        elif kind == "negative_text":
            legacy["negative_prompt"] = entry.get("text")
        elif kind == "image":
            # Motion control names its reference picture image_url in the legacy body.
            legacy["image_url" if kind_name == "motion-control" else "image"] = entry.get("image")
        elif kind == "image_tail":
            legacy["image_tail"] = entry.get("image")
        elif kind == "video":
            legacy["video_url"] = entry.get("video")
        else:
            raise ValueError(f"contents type {kind!r} is not supported")
    settings = body.get("settings") or {}
    if not isinstance(settings, dict):
        raise ValueError("settings must be an object")
    for name, value in settings.items():
        if name == "resolution":
            if value not in _RESOLUTION_MODES:
                raise ValueError(
                    f"settings.resolution must be one of {', '.join(_RESOLUTION_MODES)}"
                )
            legacy["mode"] = _RESOLUTION_MODES[value]
        elif name == "audio":
            if value not in _AUDIO_SOUND and value != "original":
                raise ValueError("settings.audio must be native, original or off")
            legacy["sound"] = _AUDIO_SOUND.get(value, "on")
        elif name == "duration":
            legacy["duration"] = str(value)
        else:
            legacy[name] = value
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError("options must be an object")
    for name in ("callback_url", "external_task_id", "watermark_info"):
        if name in options:
            legacy[name] = options[name]
    return legacy
