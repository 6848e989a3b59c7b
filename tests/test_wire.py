"""Tolerant parsing of every response shape in the API notes, and typed errors for the rest."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import attrs
import pytest

import kling_async as kling
from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.models import Task, TaskStatus
from kling_async.wire import parse_envelope, parse_task, parse_task_list, request_body

LEGACY = {
    "task_id": "867283741759111202",
    "task_status": "succeed",
    "task_status_msg": "",
    "task_info": {"external_task_id": "ext-1"},
    "task_result": {
        "videos": [
            {
                "id": "v1",
                "url": "https://cdn.test/v1.mp4",
                "watermark_url": "https://cdn.test/v1-wm.mp4",
                "duration": "5.042",
            }
        ]
    },
    "created_at": 1774805076166,
    "updated_at": 1774805176166,
}


def envelope(data: Any, code: Any = 0, status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return (
        status,
        {},
        json.dumps({"code": code, "message": "SUCCEED", "request_id": "r", "data": data}).encode(),
    )


def test_legacy_task() -> None:
    """The documented legacy single-query answer."""
    task = parse_task(LEGACY, TEXT_TO_VIDEO)
    assert task.id == "867283741759111202"
    assert task.status is kling.TaskStatus.SUCCEED
    assert task.external_task_id == "ext-1"
    assert task.status_msg is None
    assert task.created_at == datetime(2026, 3, 29, 17, 24, 36, 166000, tzinfo=timezone.utc)
    assert task.videos[0].duration == pytest.approx(5.042)
    assert task.videos[0].watermark_url == "https://cdn.test/v1-wm.mp4"
    assert task.raw["task_id"] == LEGACY["task_id"]


@pytest.mark.parametrize("code", [0, "0", "success", "SUCCESS"])
def test_success_codes(code: Any) -> None:
    """code may be 0, "0" or "success"."""
    status, headers, body = envelope(LEGACY, code)
    assert parse_envelope(status, headers, body, where="t")["task_id"] == LEGACY["task_id"]


def test_seconds_timestamps() -> None:
    """Gateways that send seconds get the same datetime as milliseconds."""
    task = parse_task(
        {**LEGACY, "created_at": 1774805076, "updated_at": "1774805076"}, TEXT_TO_VIDEO
    )
    assert task.created_at == datetime(2026, 3, 29, 17, 24, 36, tzinfo=timezone.utc)
    assert task.updated_at == task.created_at


def test_gateway_wrapped_task() -> None:
    """new-api style: the Kling task sits in data.data, the gateway status beside it."""
    wrapped = {
        "task_id": "task_abc",
        "action": "OMNI_VIDEO",
        "status": "SUCCESS",
        "fail_reason": "",
        "progress": "100%",
        "data": LEGACY,
    }
    task = parse_task(wrapped, TEXT_TO_VIDEO)
    # The gateway's id is the one it answers queries for; the upstream's is kept beside it.
    assert task.id == "task_abc"
    assert task.upstream_id == LEGACY["task_id"]
    assert task.progress == 100
    assert task.succeeded
    assert task.videos[0].url == "https://cdn.test/v1.mp4"


def test_gateway_wrapped_failure_uses_outer_reason() -> None:
    """When the upstream task has no message, the gateway's fail_reason explains the failure."""
    wrapped = {
        "task_id": "t",
        "status": "FAILURE",
        "fail_reason": "risk control",
        "data": {"task_id": "t"},
    }
    task = parse_task(wrapped, TEXT_TO_VIDEO)
    assert task.failed
    assert task.status_msg == "risk control"


def test_new_style_task() -> None:
    """The 2026 new-standard shape: id/status/outputs and 'succeeded'."""
    data = {
        "id": "n1",
        "status": "succeeded",
        "message": "",
        "create_time": 1774805076166,
        "update_time": 1774805076166,
        "external_id": "ext-9",
        "outputs": [
            {"type": "video", "id": "v", "url": "https://cdn.test/v.mp4", "duration": "10"},
            {"type": "image", "url": "x"},
        ],
    }
    task = parse_task(data, TEXT_TO_VIDEO)
    assert (task.id, task.status, task.external_task_id) == (
        "n1",
        kling.TaskStatus.SUCCEED,
        "ext-9",
    )
    assert [v.duration for v in task.videos] == [10.0]


def test_unknown_status_is_kept() -> None:
    """An unknown status is not an error; the original text is kept."""
    task = parse_task({"task_id": "1", "task_status": "teleporting"}, TEXT_TO_VIDEO)
    assert task.status is kling.TaskStatus.UNKNOWN
    assert task.raw_status == "teleporting"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"task_status": "succeed"}, "no 'task_id'"),
        ({"task_id": "1"}, "no 'task_status'"),
        ({"task_id": "1", "task_status": "succeed", "created_at": "yesterday"}, "created_at"),
        (
            {
                "task_id": "1",
                "task_status": "succeed",
                "task_result": {"videos": [{"id": "v", "url": "u", "duration": "long"}]},
            },
            "duration",
        ),
        ({"task_id": ["1"], "task_status": "succeed"}, "task_id"),
        ("not an object", "expected a task object"),
    ],
)
def test_malformed_task_is_a_typed_error(data: Any, message: str) -> None:
    """A malformed task raises ResponseParseError naming what was wrong, never KeyError."""
    with pytest.raises(kling.ResponseParseError, match=message):
        parse_task(data, TEXT_TO_VIDEO, where="GET videos/text2video/1")


def test_envelope_errors() -> None:
    """Non-JSON, a missing 'data' and non-objects are typed parse errors."""
    with pytest.raises(kling.ResponseParseError, match="not JSON"):
        parse_envelope(200, {}, b'{"code": 0, "data": {"task_id"', where="w")
    with pytest.raises(kling.ResponseParseError, match="no 'data'"):
        parse_envelope(200, {}, b'{"code": 0}', where="w")
    with pytest.raises(kling.ResponseParseError, match="JSON object"):
        parse_envelope(200, {}, b"[1, 2]", where="w")


@pytest.mark.parametrize(
    ("status", "headers", "body", "says"),
    [
        (
            301,
            {"Location": "https://www.example.com/?t=secret"},
            b"<html>moved</html>",
            "a redirect to https://www.example.com/ instead",
        ),
        (302, {}, b"", "a redirect instead"),
        (307, {"location": "/elsewhere"}, b'{"code": 0, "data": {}', "a redirect to /elsewhere"),
        (302, {}, b'{"code": 0, "data": {"task_id": "1"}}', "a redirect instead"),
        (301, {}, b'{"message": "Moved Permanently"}', "a redirect instead"),
        (308, {}, b'{"error": {"message": "moved"}}', "a redirect instead"),
    ],
)
def test_a_redirect_is_a_final_error_not_an_unreadable_answer(
    status: int, headers: dict[str, str], body: bytes, says: str
) -> None:
    """CometAPI answers a wrong path with a 301 (kling-api.md §2.5): the request never reached
    the API, so it is an APIError that is neither retried nor "maybe created"."""
    with pytest.raises(kling.APIError) as info:
        parse_envelope(status, headers, body, where="POST videos/text2video")
    error = info.value
    assert says in str(error)
    assert "secret" not in str(error)
    assert error.status == status
    assert not kling.RetryPolicy().should_retry(error, 0)


@pytest.mark.parametrize(
    "headers", [{"Content-Type": "text/html; charset=utf-8"}, {"content-type": "text/plain"}]
)
def test_a_web_page_is_an_unreadable_answer_that_names_base_url(headers: dict[str, str]) -> None:
    """A 200 page may be a proxy's glitch (retried as unreadable); the message suggests the URL."""
    with pytest.raises(kling.ResponseParseError, match=r"HTML page, not JSON \(is base_url"):
        parse_envelope(200, headers, b"  <!doctype html><html>", where="w")


def test_kling_error_with_http_200() -> None:
    """HTTP 200 is not success: the body code decides."""
    body = json.dumps({"code": 1301, "message": "risk", "request_id": "rq"}).encode()
    with pytest.raises(kling.ContentPolicyError) as info:
        parse_envelope(200, {}, body, where="w")
    assert info.value.request_id == "rq"


def test_string_error_code() -> None:
    """A numeric code sent as a string is still classified."""
    body = json.dumps(
        {"code": "1303", "message": "parallel task over resource pack limit"}
    ).encode()
    with pytest.raises(kling.ConcurrencyLimitError):
        parse_envelope(429, {"retry-after": "2"}, body, where="w")


def test_cometapi_error_envelope() -> None:
    """CometAPI's {"error": {...}} envelope, with the request id inside the message."""
    body = json.dumps(
        {
            "error": {
                "code": "",
                "message": "invalid token (request id: 2025abc)",
                "type": "comet_api_error",
            }
        }
    ).encode()
    with pytest.raises(kling.AuthenticationError) as info:
        parse_envelope(401, {}, body, where="w")
    assert info.value.request_id == "2025abc"


def test_html_error_page() -> None:
    """A proxy's HTML 502 page becomes a ServerError, not a parse crash."""
    with pytest.raises(kling.ServerError, match="non-JSON"):
        parse_envelope(502, {}, b"<html>bad gateway</html>", where="w")


def test_retry_after_is_carried() -> None:
    """Retry-After on an error answer is kept on the exception."""
    body = json.dumps({"code": 1302, "message": "too fast"}).encode()
    with pytest.raises(kling.RateLimitError) as info:
        parse_envelope(429, {"retry-after": "7"}, body, where="w")
    assert info.value.retry_after == 7.0


def test_task_list() -> None:
    """The list answer is an array of task objects."""
    tasks = parse_task_list(
        [LEGACY, {**LEGACY, "task_id": "2", "task_status": "processing"}], TEXT_TO_VIDEO
    )
    assert [t.id for t in tasks] == [LEGACY["task_id"], "2"]
    with pytest.raises(kling.ResponseParseError):
        parse_task_list({"nothing": 1}, TEXT_TO_VIDEO)


def test_request_body_fields() -> None:
    """Every field goes on the wire with its documented name and type."""
    request = kling.TextToVideo(
        prompt="p",
        negative_prompt="n",
        model_name="kling-v1",
        mode="pro",
        duration=10,
        aspect_ratio="9:16",
        cfg_scale=0.5,
        sound="on",
        watermark=False,
        callback_url="http://127.0.0.1:9/cb",
        camera_control=kling.CameraControl(type="simple", config=kling.CameraConfig(tilt=-2)),
    )
    body = request_body(request, external_task_id="e")
    assert body == {
        "prompt": "p",
        "negative_prompt": "n",
        "model_name": "kling-v1",
        "mode": "pro",
        "duration": "10",
        "aspect_ratio": "9:16",
        "cfg_scale": 0.5,
        "sound": "on",
        "watermark_info": {"enabled": False},
        "callback_url": "http://127.0.0.1:9/cb",
        "external_task_id": "e",
        "camera_control": {
            "type": "simple",
            "config": {"horizontal": 0, "vertical": 0, "pan": 0, "tilt": -2, "roll": 0, "zoom": 0},
        },
    }
    preset = request_body(
        kling.TextToVideo(prompt="p", camera_control=kling.CameraControl(type="down_back"))
    )
    assert preset["camera_control"] == {"type": "down_back"}


def test_parse_task_builds_tasks_in_the_field_order_it_relies_on() -> None:
    """parse_task passes Task's fields by position (the hot path); a reordering of Task's fields
    must fail here, not silently swap two values."""
    assert [field.name for field in attrs.fields(Task)] == [
        "id",
        "kind",
        "status",
        "raw_status",
        "status_msg",
        "external_task_id",
        "created_at",
        "updated_at",
        "videos",
        "upstream_id",
        "progress",
        "raw",
        "fingerprint",
    ]
    upstream = {
        "task_id": "up-7",
        "task_status": "processing",
        "task_status_msg": "busy",
        "task_info": {"external_task_id": "mine"},
        "created_at": 1_700_000_000_000,
        "updated_at": 1_700_000_001_000,
    }
    data = {"task_id": "gw-7", "status": "IN_PROGRESS", "progress": "40%", "data": upstream}
    task = parse_task(data, TEXT_TO_VIDEO, fingerprint=b"fp")
    assert (task.id, task.upstream_id, task.kind, task.status, task.raw_status) == (
        "gw-7",
        "up-7",
        TEXT_TO_VIDEO,
        TaskStatus.PROCESSING,
        "processing",
    )
    assert (task.status_msg, task.external_task_id) == ("busy", "mine")
    stamps = (task.created_at, task.updated_at)
    assert [None if at is None else at.timestamp() for at in stamps] == [1.7e9, 1.7e9 + 1]
    assert (task.videos, task.progress, task.fingerprint) == ((), 40, b"fp")
    assert task.raw == data


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"])
def test_an_envelope_reads_in_any_json_encoding(encoding: str) -> None:
    """UTF-8 objects skip json's encoding sniffing; the others must still read as json reads them."""
    text = '{"code": 0, "message": "é", "data": {"task_id": "t1"}}'
    assert parse_envelope(200, {}, text.encode(encoding), where="GET x") == {"task_id": "t1"}


def test_an_envelope_that_is_not_utf8_is_a_typed_error() -> None:
    with pytest.raises(kling.ResponseParseError, match="not JSON"):
        parse_envelope(200, {}, b'{"code": 0, "data": "\xff"}', where="GET x")


def test_an_envelope_with_an_encoded_surrogate_reads_as_json_reads_it() -> None:
    """json.loads(bytes) lets a lone surrogate through (surrogatepass); so must the UTF-8
    shortcut, or a server's error answer would lose its code and message."""
    body = b'{"code": 1303, "message": "busy \xed\xa0\x80"}'
    with pytest.raises(kling.ConcurrencyLimitError):
        parse_envelope(200, {}, body, where="GET x")


def test_an_unreadable_item_is_left_out_of_a_list_not_the_whole_page() -> None:
    """A task whose results were cleared (30 days) still says succeed with no video: the
    page's other tasks are read all the same."""
    running = {"task_id": "1", "task_status": "processing", "created_at": 1, "updated_at": 1}
    cleared = {"task_id": "2", "task_status": "succeed", "task_result": {"videos": []}}
    odd = {"task_status": "processing"}  # no id at all
    tasks = parse_task_list([cleared, running, odd], TEXT_TO_VIDEO)
    assert [task.id for task in tasks] == ["1"]
    with pytest.raises(kling.MissingResultError):
        parse_task(cleared, TEXT_TO_VIDEO)
    # Strict (the external-id look-up): a task left out would be taken for one never created.
    with pytest.raises(kling.MissingResultError):
        parse_task_list([running, cleared], TEXT_TO_VIDEO, strict=True)
