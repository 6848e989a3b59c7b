"""Hostile and unlucky answers (issue 14, items 1-2): no silent empty success, typed errors only."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kling_async as kling
from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.testing import FakeKlingServer
from kling_async.transport import RawResponse
from kling_async.wire import fingerprint, parse_envelope, parse_task

from .conftest import client_for
from .test_wire import LEGACY

VIDEO = {"id": "v", "url": "https://cdn.test/v.mp4"}


def succeed(result: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"task_id": "1", "task_status": "succeed"}
    if result is not None:
        task["task_result"] = result
    return task


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (succeed(None), "holds no video"),
        (succeed({"videos": []}), "holds no video"),
        (succeed({"videos": [{}]}), "no video has an http"),
        (succeed({"videos": [{"url": "ftp://x/y.mp4"}]}), "no video has an http"),
        (succeed({"videos": [{"url": "https://"}]}), "no video has an http"),
    ],
)
def test_a_success_without_a_video_is_an_error(answer: dict[str, Any], reason: str) -> None:
    with pytest.raises(kling.MissingResultError, match=reason) as caught:
        parse_task(answer, TEXT_TO_VIDEO)
    assert caught.value.raw == answer
    assert caught.value.task_id == "1"


@pytest.mark.parametrize("videos", ["Succeed", [1, 2], [VIDEO, "x"], {"url": "https://a/b"}])
def test_result_lists_must_be_lists_of_objects(videos: Any) -> None:
    with pytest.raises(kling.ResponseParseError, match="must be a list of objects"):
        parse_task(succeed({"videos": videos}), TEXT_TO_VIDEO)


def test_unfinished_tasks_need_no_result() -> None:
    task = parse_task({"task_id": "1", "task_status": "processing"}, TEXT_TO_VIDEO)
    assert task.status is kling.TaskStatus.PROCESSING
    assert task.videos == ()


def test_upstream_envelope_inside_the_gateway_record() -> None:
    """The shape a gateway storing the raw upstream body answers (issue 14, item 1)."""
    body = {
        "code": "success",
        "data": {
            "task_id": "task_x",
            "status": "SUCCESS",
            "progress": "100%",
            "data": {"code": 0, "message": "SUCCEED", "request_id": "r", "data": LEGACY},
        },
    }
    data = parse_envelope(200, {}, json.dumps(body).encode(), where="GET")
    task = parse_task(data, TEXT_TO_VIDEO)
    assert task.succeeded
    assert task.id == "task_x"
    assert task.upstream_id == LEGACY["task_id"]
    assert task.external_task_id == "ext-1"
    assert [video.url for video in task.videos] == ["https://cdn.test/v1.mp4"]


def test_envelopes_nested_twice_are_unwrapped() -> None:
    inner = {"code": 0, "message": "ok", "data": LEGACY}
    record = {"task_id": "g", "status": "SUCCESS", "data": {"code": "0", "data": inner}}
    assert parse_task(record, TEXT_TO_VIDEO).videos[0].id == "v1"


def test_nesting_is_bounded() -> None:
    record: dict[str, Any] = dict(LEGACY)
    for level in range(20):
        record = {"task_id": f"g{level}", "status": "processing", "data": record}
    with pytest.raises(kling.ResponseParseError, match="levels deep"):
        parse_task(record, TEXT_TO_VIDEO)


def test_an_inner_error_code_is_raised() -> None:
    record = {
        "task_id": "g",
        "status": "IN_PROGRESS",
        "data": {"code": 1203, "message": "task not found", "data": None},
    }
    with pytest.raises(kling.NotFoundError):
        parse_task(record, TEXT_TO_VIDEO)


def test_an_inner_error_explains_a_settled_failure() -> None:
    record = {
        "task_id": "g",
        "status": "FAILURE",
        "fail_reason": "",
        "data": {"code": 1301, "message": "risk control", "data": None},
    }
    task = parse_task(record, TEXT_TO_VIDEO)
    assert task.failed
    assert task.status_msg == "risk control"


def test_result_url_is_a_fallback_result() -> None:
    record = {"task_id": "g", "status": "SUCCESS", "result_url": "https://cdn.test/r.mp4"}
    assert parse_task(record, TEXT_TO_VIDEO).videos[0].url == "https://cdn.test/r.mp4"


def test_a_gateway_that_settled_a_task_is_believed() -> None:
    record = {
        "task_id": "g",
        "status": "FAILURE",
        "fail_reason": "timeout",
        "data": {"task_id": "u", "task_status": "processing"},
    }
    task = parse_task(record, TEXT_TO_VIDEO)
    assert task.failed
    assert task.status_msg == "timeout"


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (400, {"code": "task_not_exist", "message": "task_not_exist"}, kling.NotFoundError, None),
        (
            400,
            {"code": "fail_to_fetch_task", "message": json.dumps({"code": 1301, "message": "x"})},
            kling.ContentPolicyError,
            1301,
        ),
        (
            429,
            {"code": "fail_to_fetch_task", "message": json.dumps({"code": 1303, "message": "x"})},
            kling.ConcurrencyLimitError,
            1303,
        ),
        (
            429,
            {"code": "fail_to_fetch_task", "message": "当前分组上游负载已饱和，请稍后再试"},  # noqa: RUF001
            kling.GatewaySaturatedError,
            None,
        ),
        (400, {"code": "task_failed", "message": "bad prompt"}, kling.BadRequestError, None),
    ],
)
def test_gateway_error_table(status: int, body: Any, error: type[Exception], code: Any) -> None:
    with pytest.raises(error) as caught:
        parse_envelope(status, {}, json.dumps(body).encode(), where="GET x")
    assert type(caught.value) is error
    if code is not None:
        assert caught.value.code == code  # type: ignore[attr-defined]


def test_model_missing_error_says_how_to_set_the_default() -> None:
    body = {"error": {"message": "Model name not specified (request id: 7)", "type": "x"}}
    with pytest.raises(kling.BadRequestError, match=r"KlingClient\(model_name=") as caught:
        parse_envelope(400, {}, json.dumps(body).encode(), where="POST")
    assert caught.value.request_id == "7"


def test_deeply_nested_json_is_a_parse_error() -> None:
    # Balanced and deep enough to exceed every supported interpreter's decoder limit (3.13's
    # decodes 5,000 levels; an unbalanced body would only be invalid JSON there).
    depth = 100_000
    with pytest.raises(kling.ResponseParseError, match="nested too deeply"):
        parse_envelope(200, {}, b"[" * depth + b"]" * depth, where="GET x")


async def test_deeply_nested_answer_through_get_task(server: FakeKlingServer) -> None:
    """The client's path end to end: a hostile body is a ResponseParseError, not RecursionError."""
    from kling_async.transport import RawResponse

    class Hostile:
        async def request(self, *args: Any, **kwargs: Any) -> RawResponse:
            return RawResponse(status=200, headers={}, body=b"[" * 5000)

        async def aclose(self) -> None: ...

    retry = kling.RetryPolicy(max_retries=0)
    async with client_for(server, transport=Hostile(), retry=retry) as client:
        with pytest.raises(kling.ResponseParseError):
            await client.get_task("123")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "task_id",
                    "id",
                    "task_status",
                    "status",
                    "data",
                    "code",
                    "message",
                    "task_result",
                    "videos",
                    "outputs",
                    "url",
                    "result_url",
                    "task_info",
                    "progress",
                    "error",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(status=st.sampled_from([200, 400, 404, 429, 500]), payload=_json)
def test_parsers_raise_only_typed_errors(status: int, payload: Any) -> None:
    """Whatever a server sends: a task, or a KlingError; never a success with no video."""
    body = json.dumps(payload).encode()
    try:
        data = parse_envelope(status, {}, body, where="fuzz")
        task = parse_task(data, TEXT_TO_VIDEO, where="fuzz")
    except kling.KlingError:
        return
    if task.succeeded:
        assert any(video.url.startswith(("http://", "https://")) for video in task.videos)


def _without_request_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_request_ids(v) for k, v in value.items() if k != "request_id"}
    if isinstance(value, list):
        return [_without_request_ids(item) for item in value]
    return value


_request_ids = st.one_of(st.text(alphabet="abcdef0123456789-", max_size=36), st.integers(0, 10**9))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(payload=_json, first=_request_ids, second=_request_ids, other=_json)
def test_a_fingerprint_sees_everything_but_request_ids(
    payload: Any, first: Any, second: Any, other: Any
) -> None:
    """Answers that differ in request ids (strings or integers) alone share a fingerprint, and
    any other difference parts them: a status check may keep the task it has only when the
    answers read alike. (Request ids of other types are not skipped: answers then merely
    read again.)"""
    one = {"code": 0, "request_id": first, "data": payload}
    two = {"code": 0, "request_id": second, "data": payload}
    assert fingerprint(json.dumps(one).encode()) == fingerprint(json.dumps(two).encode())
    three = {"code": 0, "request_id": first, "data": other}
    same = _without_request_ids(payload) == _without_request_ids(other)
    # json.dumps keeps key order, so equal payloads serialise alike; NaN never equals itself.
    if json.dumps(_without_request_ids(payload)) != json.dumps(_without_request_ids(other)):
        assert fingerprint(json.dumps(one).encode()) != fingerprint(json.dumps(three).encode())
    elif same:
        assert fingerprint(json.dumps(one).encode()) == fingerprint(json.dumps(three).encode())


def test_a_gateway_s_nested_request_ids_are_skipped_too() -> None:
    """A gateway that keeps Kling's envelope inside its own renews both request ids."""

    def wrapped(outer: str, inner: str, status: str = "processing") -> bytes:
        upstream = {"code": 0, "request_id": inner, "data": {"task_status": status}}
        return json.dumps({"code": 0, "request_id": outer, "data": {"data": upstream}}).encode()

    assert fingerprint(wrapped("a", "b")) == fingerprint(wrapped("c", "d"))
    assert fingerprint(wrapped("a", "b")) != fingerprint(wrapped("a", "b", "succeed"))
    # Not a string or an integer: not skipped, so the answer is read again (the safe side).
    assert fingerprint(b'{"request_id": null}') != fingerprint(b'{"request_id": 1}')


_odd_values = (
    st.none()
    | st.booleans()
    | st.integers(-(10**16), 10**16)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.dictionaries(st.sampled_from(["external_task_id", "videos", "x"]), st.none() | st.text())
)


def _mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """*valid* most of the time, so that the shortcut is taken often; any value otherwise."""
    return st.integers(0, 7).flatmap(lambda draw: _odd_values if draw == 0 else valid)


_times = _mostly(st.integers(-(10**15), 10**15) | st.floats(-1e13, 1e13) | st.none())
_legacy_tasks = st.fixed_dictionaries(
    {
        "task_id": _mostly(st.text(min_size=1, max_size=20)),
        "task_status": _mostly(
            st.sampled_from(["processing", "submitted", "Succeed", "failed", "queued"])
        ),
    },
    optional={
        "task_status_msg": _mostly(st.sampled_from(["", "ok"]) | st.none()),
        "task_info": _mostly(
            st.fixed_dictionaries(
                {}, optional={"external_task_id": _mostly(st.sampled_from(["", "ext-1"]))}
            )
        ),
        "task_result": _mostly(st.sampled_from([{"videos": []}, {}, {"videos": None}])),
        "created_at": _times,
        "updated_at": _times,
        "external_task_id": _mostly(st.sampled_from(["", "ext-2"]) | st.none()),
        "final_unit_deduction": _odd_values,
        "watermark_info": _odd_values,
    },
)
_gateway_fields = st.integers(0, 3).flatmap(
    lambda draw: (
        st.just({})
        if draw
        else st.fixed_dictionaries({}, optional={"status": _odd_values, "progress": _odd_values})
    )
)
_legacy_answers = st.builds(lambda task, extra: {**task, **extra}, _legacy_tasks, _gateway_fields)


def _outcome(data: Any, *, shortcut: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    from kling_async import wire

    with monkeypatch.context() as patch:
        if not shortcut:
            patch.setattr(wire, "_plain_task", lambda *_args: None)
        try:
            task = parse_task(data, TEXT_TO_VIDEO, where="fuzz", keep_raw=False)
        except kling.KlingError as exc:
            return (type(exc), str(exc))
    return attrs.asdict(task, recurse=False)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=_legacy_answers)
def test_the_legacy_shortcut_reads_as_the_general_walk_does(
    data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``parse_task`` reads an unfinished legacy task without the gateway-layer walk and the
    converter; whatever the answer holds, the task (or the error) must be the one the general
    path gives."""
    fast = _outcome(data, shortcut=True, monkeypatch=monkeypatch)
    slow = _outcome(data, shortcut=False, monkeypatch=monkeypatch)
    assert fast == slow


def test_the_legacy_shortcut_is_taken_for_a_running_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcut must actually serve Kling's running task, or the property above is idle."""
    from kling_async import wire

    running = {**LEGACY, "task_status": "processing", "task_result": {"videos": []}}
    assert wire._plain_task(running, TEXT_TO_VIDEO, None, False, None) is not None
    gateway = {**running, "progress": "50%"}  # a gateway's field
    assert wire._plain_task(gateway, TEXT_TO_VIDEO, None, False, None) is None


@pytest.mark.parametrize("progress", [float("inf"), float("-inf"), float("nan"), "1e999", "inf%"])
def test_a_progress_that_is_no_number_is_no_progress(progress: Any) -> None:
    """An infinite progress used to escape as OverflowError; any non-finite one reads as none."""
    record = {"task_id": "t1", "status": "IN_PROGRESS", "progress": progress}
    assert parse_task(record, TEXT_TO_VIDEO).progress is None


def test_crazyrouter_answers_name_no_task_and_explain_failure_in_error() -> None:
    """crazyrouter's ``{code: "success", data: {status, url, error}}`` (kling-api.md §2.4): the
    id asked for stands in, the lone URL is the video, and ``error.message`` says why it failed."""
    done = {"code": "success", "data": {"status": "succeeded", "url": VIDEO["url"], "error": None}}
    task = parse_task(
        parse_envelope(200, {}, json.dumps(done).encode(), where="w"), TEXT_TO_VIDEO, asked_id="t-1"
    )
    assert (task.id, task.status, [v.url for v in task.videos]) == (
        "t-1",
        kling.TaskStatus.SUCCEED,
        [VIDEO["url"]],
    )
    failed = {
        "code": "success",
        "data": {
            "task_id": "t-2",
            "status": "failed",
            "url": "",
            "error": {"code": "content_policy", "message": "blocked by moderation"},
        },
    }
    task = parse_task(
        parse_envelope(200, {}, json.dumps(failed).encode(), where="w"), TEXT_TO_VIDEO
    )
    assert (task.id, task.status, task.status_msg) == (
        "t-2",
        kling.TaskStatus.FAILED,
        "blocked by moderation",
    )
    with pytest.raises(kling.ResponseParseError, match="no 'task_id'"):
        parse_task({"status": "succeeded", "url": VIDEO["url"]}, TEXT_TO_VIDEO)  # nothing asked


def test_newapi_pro_bare_answers_read_without_an_envelope() -> None:
    """newapi.pro's ``{task_id, status: "completed", url}`` (kling-api.md §2.4)."""
    body = json.dumps({"task_id": "n-1", "status": "completed", "url": VIDEO["url"]}).encode()
    task = parse_task(parse_envelope(200, {}, body, where="w"), TEXT_TO_VIDEO)
    assert (task.id, task.status, [v.url for v in task.videos]) == (
        "n-1",
        kling.TaskStatus.SUCCEED,
        [VIDEO["url"]],
    )


async def test_get_task_reads_a_query_answer_that_names_no_task() -> None:
    """Through the client: an answer without an id reads as the task asked for."""
    answer = {"code": "success", "data": {"status": "processing", "url": ""}}
    async with kling.KlingClient(api_key="k" * 32, transport=_Canned(answer)) as client:
        task = await client.get_task("t-9")
    assert (task.id, task.status) == ("t-9", kling.TaskStatus.PROCESSING)


class _Canned:
    """A transport answering every request with one canned body."""

    def __init__(self, answer: Any) -> None:
        self.body = json.dumps(answer).encode()

    async def request(self, method: str, url: str, **kwargs: Any) -> RawResponse:
        return RawResponse(200, {"content-type": "application/json"}, self.body)

    async def aclose(self) -> None:
        pass
