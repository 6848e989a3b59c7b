"""The external-id look-up after an ambiguous create, against servers that serve one form each.

Kling documents that a task can be found by its ``external_task_id`` but not the URL
(kling-api.md §1.7), and public clients use three forms. A server that does not serve a form
answers "not found" to it for a task that exists: only a "none" from every form may license
sending the create again. These servers are small aiohttp apps on 127.0.0.1, not the emulator,
which serves every form.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import kling_async as kling

from .conftest import API_KEY, FAST_RETRY

_FIRST_ID = 867283741759111202


class _Gateway:
    """Creates tasks (losing the first create's answer) and finds them by the chosen forms."""

    def __init__(self, forms: set[str], *, unique_ids: bool = False, query_error: bool = False):
        self.forms = forms
        self.unique_ids = unique_ids
        self.query_error = query_error
        self.created: dict[str, str] = {}  # task id -> external id
        self.creates = 0

    def _task(self, task_id: str) -> dict[str, Any]:
        return {
            "task_id": task_id,
            "task_status": "submitted",
            "task_info": {"external_task_id": self.created[task_id]},
        }

    def _by_external(self, ext_id: str) -> str | None:
        return next((tid for tid, ext in self.created.items() if ext == ext_id), None)

    async def create(self, request: web.Request) -> web.Response:
        ext_id = (await request.json())["external_task_id"]
        self.creates += 1
        if self.unique_ids and self._by_external(ext_id) is not None:
            return _error(400, 1201, "external_task_id already exists")
        task_id = str(_FIRST_ID + len(self.created))
        self.created[task_id] = ext_id
        if len(self.created) == 1:
            return _error(500, 5000, "internal error")  # made, but the answer is lost
        return _ok(self._task(task_id))

    async def query(self, request: web.Request) -> web.Response:
        slot = request.match_info["slot"]
        flagged = request.query.get("external_task_id") == "true"
        form = "flag" if flagged else "path"
        found = self._by_external(slot) if form in self.forms else None
        if found is None and slot in self.created and not flagged:
            found = slot
        return _ok(self._task(found)) if found else _error(404, 1203, "task not found")

    async def listing(self, request: web.Request) -> web.Response:
        ext_id = request.query.get("external_task_id")
        if ext_id is not None and self.query_error:
            return _error(400, 1201, "unknown parameter external_task_id")
        if ext_id is not None and "query" in self.forms:
            found = self._by_external(ext_id)
            return _ok(self._task(found)) if found else _error(404, 1203, "task not found")
        # A list that ignores the filter, newest first, as a server without the form may.
        return _ok([self._task(tid) for tid in reversed(list(self.created))])


def _ok(data: Any) -> web.Response:
    return web.json_response({"code": 0, "message": "SUCCEED", "request_id": "r", "data": data})


def _error(status: int, code: int, message: str) -> web.Response:
    body = {"code": code, "message": message, "request_id": "r"}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


@pytest.fixture
def serve() -> Callable[[_Gateway], Any]:
    def start(gateway: _Gateway) -> Any:
        app = web.Application()
        app.router.add_post("/v1/videos/text2video", gateway.create)
        app.router.add_get("/v1/videos/text2video", gateway.listing)
        app.router.add_get("/v1/videos/text2video/{slot}", gateway.query)
        return TestServer(app, host="127.0.0.1")

    return start


def _kling(url: str) -> kling.KlingClient:
    provider = kling.KLING.with_base_url(url)
    return kling.KlingClient(api_key=API_KEY, provider=provider, retry=FAST_RETRY, timeout=5.0)


@pytest.mark.parametrize("forms", [{"path"}, {"flag"}, {"query"}])
async def test_every_form_is_tried_until_one_finds_the_task(
    serve: Callable[[_Gateway], TestServer], forms: set[str]
) -> None:
    """Kling direct looks in every form: whichever the server serves finds the task, once made."""
    gateway = _Gateway(forms)
    async with serve(gateway) as server, _kling(str(server.make_url(""))) as client:
        task = await client.submit(kling.TextToVideo(prompt="x", external_task_id="ext-1"))
    assert gateway.creates == 1
    assert task.id == str(_FIRST_ID)


async def test_a_listing_that_ignores_the_filter_still_finds_the_task(
    serve: Callable[[_Gateway], TestServer],
) -> None:
    """No form serves the look-up, but the query form's unfiltered list holds the new task."""
    gateway = _Gateway(set())
    async with serve(gateway) as server, _kling(str(server.make_url(""))) as client:
        task = await client.submit(kling.TextToVideo(prompt="x", external_task_id="ext-2"))
    assert gateway.creates == 1
    assert task.external_task_id == "ext-2"


async def test_a_form_that_fails_leaves_the_create_uncertain(
    serve: Callable[[_Gateway], TestServer],
) -> None:
    """Two forms say "not found" and one is refused: nothing proves the task absent."""
    gateway = _Gateway(set(), query_error=True)
    async with serve(gateway) as server, _kling(str(server.make_url(""))) as client:
        with pytest.raises(kling.SubmitUncertainError) as info:
            await client.submit(kling.TextToVideo(prompt="x", external_task_id="ext-3"))
    assert gateway.creates == 1
    assert info.value.external_task_id == "ext-3"


async def test_a_taken_external_id_after_a_false_none_is_uncertain_not_refused(
    serve: Callable[[_Gateway], TestServer],
) -> None:
    """Every form says "none" (wrongly) and the resend is refused as a duplicate id: the
    task exists, so the caller gets SubmitUncertainError with the id, not a plain refusal."""
    gateway = _Gateway(set(), unique_ids=True)

    async def empty_listing(request: web.Request) -> web.Response:
        if "external_task_id" in request.query:
            return _error(404, 1203, "task not found")
        return _ok([])

    gateway.listing = empty_listing  # type: ignore[method-assign]
    async with serve(gateway) as server, _kling(str(server.make_url(""))) as client:
        with pytest.raises(kling.SubmitUncertainError) as info:
            await client.submit(kling.TextToVideo(prompt="x", external_task_id="ext-4"))
    assert len(gateway.created) == 1
    assert info.value.external_task_id == "ext-4"
    assert isinstance(info.value.__cause__, kling.BadRequestError)
