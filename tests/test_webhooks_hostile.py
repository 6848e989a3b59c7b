"""The callback receiver's handle() under hostile bodies: typed answers only, never an exception.

The hypothesis profile (bounded, derandomised) is loaded in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kling_async as kling
from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.webhooks import (
    MAX_JSON_DEPTH,
    TOKEN_PARAM,
    WebhookReceiver,
    sign_payload,
)

TOKEN = "tok-0123456789abcdef-secret"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TRACKED = "fuzz-task-1"
ANSWERS = {200, 400, 401, 403, 413}


class Sink:
    """A watcher stand-in that records what the receiver hands it."""

    def __init__(self) -> None:
        self.added: list[kling.Task] = []
        self.updates: list[kling.Task] = []
        self.soon: list[str] = []

    def add(self, task: kling.Task, *, has_callback: bool = False) -> None:
        self.added.append(task)

    def update(self, task: kling.Task) -> None:
        self.updates.append(task)

    def poll_soon(self, task_id: str) -> None:
        self.soon.append(task_id)


class ParserFailures(logging.Handler):
    """Counts the receiver's "parser failed" records: an untyped error escaped the parser."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@pytest.fixture(scope="module")
def parser_failures() -> Iterator[ParserFailures]:
    handler = ParserFailures()
    logger = logging.getLogger("kling_async.webhooks")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def receiver_tracking(**options: Any) -> tuple[WebhookReceiver, Sink]:
    receiver = WebhookReceiver(token=TOKEN, **options)
    sink = Sink()
    receiver.track(
        sink, kling.Task(id=TRACKED, kind=TEXT_TO_VIDEO, status=kling.TaskStatus.PROCESSING)
    )
    return receiver, sink


def answer(receiver: WebhookReceiver, body: bytes, **headers: str) -> tuple[int, str]:
    return asyncio.run(receiver.handle(headers, {TOKEN_PARAM: TOKEN}, body, peer="fuzz"))


def nested(depth: int, inner: str = "1") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


# -- regressions ------------------------------------------------------------------------------


def test_deeply_nested_body_is_a_400_not_a_500() -> None:
    """5,000 nested ``[`` made json.loads raise RecursionError out of handle() (issue 14.2)."""
    receiver, sink = receiver_tracking()
    status, reason = answer(receiver, nested(5000))
    assert status == 400
    assert str(MAX_JSON_DEPTH) in reason
    deep_object = ('{"task_id":' * 5000 + "1" + "}" * 5000).encode()
    assert answer(receiver, deep_object)[0] == 400
    assert receiver.stats.rejected[400] == 2
    assert not sink.updates


def test_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    """At the limit the body is parsed (and refused as no task); one deeper is refused as deep."""
    receiver, _ = receiver_tracking()
    at_limit = answer(receiver, nested(MAX_JSON_DEPTH))
    assert at_limit[0] == 400
    assert "not a task object" in at_limit[1]
    over = answer(receiver, nested(MAX_JSON_DEPTH + 1))
    assert "nested deeper" in over[1]
    # Brackets in strings (with escaped quotes around them) are text, not nesting.
    prompt = '\\"' + "[" * 500 + "{" * 500
    body = json.dumps(
        {"task_id": TRACKED, "task_status": "processing", "task_status_msg": prompt}
    ).encode()
    assert answer(receiver, body) == (200, "ok")


def test_oversized_body_is_refused_before_parsing() -> None:
    """Above max_body: 413, whatever the body holds."""
    receiver, _ = receiver_tracking(max_body=1024)
    assert answer(receiver, nested(600))[0] == 413


# -- fuzzing ----------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_statuses = st.sampled_from(
    ["submitted", "processing", "succeed", "failed", "SUCCESS", "succeeded", "", "??"]
) | st.text(max_size=10)
_task_ids = st.sampled_from([TRACKED, "other-task"]) | st.text(max_size=12)
_videos = (
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "id": _scalars,
                "url": st.sampled_from(["https://cdn.test/v.mp4", "", "ftp://x", "javascript:1"])
                | _scalars,
                "duration": _scalars,
            },
        ),
        max_size=3,
    )
    | _json
)
_task_like = st.fixed_dictionaries(
    {"task_id": _task_ids | _scalars, "task_status": _statuses | _scalars},
    optional={
        "task_status_msg": _scalars,
        "external_task_id": _scalars,
        "created_at": _scalars,
        "updated_at": _scalars,
        "task_result": st.fixed_dictionaries({}, optional={"videos": _videos}) | _json,
        "task_info": _json,
        "data": _json,
    },
)
_envelope = st.fixed_dictionaries({"code": _scalars, "data": _task_like | _json})


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


_bodies = st.one_of(
    st.binary(max_size=300),
    _json.map(_encode),
    _task_like.map(_encode),
    _envelope.map(_encode),
    st.integers(0, 3 * MAX_JSON_DEPTH).map(nested),
    st.text(alphabet='[]{}",:\\ 0a', max_size=400).map(str.encode),
)


@given(body=_bodies)
def test_handle_answers_every_body_with_a_status(
    body: bytes, parser_failures: ParserFailures
) -> None:
    """Whatever the body: a (status, reason) answer, never an exception or a parser crash."""
    before = parser_failures.count
    receiver, sink = receiver_tracking()
    status, reason = answer(receiver, body)
    assert status in ANSWERS
    assert isinstance(reason, str)
    assert reason
    assert parser_failures.count == before, "an untyped error escaped the task parser"
    assert receiver.stats.received == 1
    assert sum(receiver.stats.rejected.values()) == (0 if status == 200 else 1)
    for task in sink.updates:
        assert task.id == TRACKED


@given(
    body=_bodies,
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "x-other"]),
        st.text(max_size=40),
        max_size=4,
    ),
    query=st.dictionaries(
        st.sampled_from([TOKEN_PARAM, "x"]), st.sampled_from([TOKEN, "", "nope"]) | st.text()
    ),
)
def test_signed_receiver_answers_every_request(
    body: bytes, headers: dict[str, str], query: dict[str, str]
) -> None:
    """Forged or broken signatures, tokens and bodies: always a status, never an exception."""
    receiver = WebhookReceiver(token=TOKEN, signing_secret=SECRET)
    status, _ = asyncio.run(receiver.handle(headers, query, body))
    assert status in ANSWERS
    if query.get(TOKEN_PARAM) != TOKEN:
        assert status in (401, 403)


@given(body=_task_like.map(_encode))
def test_validly_signed_hostile_bodies_get_a_status(body: bytes) -> None:
    """A correctly signed body is still parsed defensively."""
    receiver = WebhookReceiver(token=TOKEN, signing_secret=SECRET)
    sink = Sink()
    receiver.track(
        sink, kling.Task(id=TRACKED, kind=TEXT_TO_VIDEO, status=kling.TaskStatus.PROCESSING)
    )
    now = int(time.time())
    headers = {
        "webhook-id": "msg-1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign_payload(SECRET, "msg-1", now, body),
    }
    status, _ = asyncio.run(receiver.handle(headers, {TOKEN_PARAM: TOKEN}, body))
    assert status in (200, 400)
