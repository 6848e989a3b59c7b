"""The OpenTelemetry integration with the real SDK (in-memory exporters) against the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import kling_async as kling
from kling_async.errors import RateLimitError
from kling_async.events import RequestCompleted, TaskSubmitted
from kling_async.kinds import TEXT_TO_VIDEO
from kling_async.otel import METRICS, instrument
from kling_async.otel._http import throttle_reason
from kling_async.otel._tasks import OpenTask, TaskRegistry
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.webhooks import WebhookReceiver

from .conftest import API_KEY, FAST_RETRY, client_for
from .otel_support import Telemetry, attribute_values
from .test_fastapi_example import read_events, serving
from .test_webhooks import SLOW_POLL, TOKEN, listening, post

PROMPT = "A private beach at sunset"
QUERY_SPAN = "GET videos/text2video/{task_id}"


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """The SDK with in-memory exporters, shut down after the test."""
    running = Telemetry()
    yield running
    running.shutdown()


def hooks(telemetry: Telemetry) -> dict[str, object]:
    """The keyword arguments that point ``instrument()`` at the test's providers."""
    return {
        "tracer_provider": telemetry.tracer_provider,
        "meter_provider": telemetry.meter_provider,
    }


async def test_create_poll_download_spans_continue_the_callers_trace(
    server: FakeKlingServer, telemetry: Telemetry, tmp_path: Path
) -> None:
    """A handler's span is the parent of the create request and the task span; every status
    check is a child of the task span; the download joins the handler's trace with a link."""
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with client_for(server) as client:
        instrument(client, **hooks(telemetry))
        with tracer.start_as_current_span("handler"):
            task = await client.text_to_video(PROMPT, mode="pro", model_name="kling-v1")
            done = await client.wait(task, timeout=10)
            path = await client.download(done, tmp_path)

    (handler,) = telemetry.named("handler")
    (create,) = telemetry.named("POST videos/text2video")
    (task_span,) = telemetry.named("kling.task")
    (download,) = telemetry.named("kling.download")
    polls = telemetry.named(QUERY_SPAN)
    assert handler.parent is None
    trace_id = handler.context.trace_id
    for span in (create, task_span, download, *polls):
        assert span.context.trace_id == trace_id, span.name

    assert create.parent is not None
    assert create.parent.span_id == handler.context.span_id
    assert create.kind is SpanKind.CLIENT
    assert create.attributes is not None
    assert create.attributes["http.request.method"] == "POST"
    assert create.attributes["http.response.status_code"] == 200
    assert create.attributes["url.template"] == "videos/text2video"
    assert create.attributes["server.address"] == "127.0.0.1"
    assert create.attributes["url.full"] == f"{server.url}/kling/v1/videos/text2video"
    assert "error.type" not in create.attributes

    assert task_span.parent is not None
    assert task_span.parent.span_id == handler.context.span_id
    assert task_span.attributes is not None
    assert task_span.attributes["kling.task.id"] == task.id
    assert task_span.attributes["kling.task.kind"] == "text2video"
    assert task_span.attributes["kling.model"] == "kling-v1"
    assert task_span.attributes["kling.mode"] == "pro"
    assert task_span.attributes["kling.task.status"] == "succeed"
    assert task_span.attributes["kling.task.external_id"] == task.external_task_id
    statuses = [event.attributes["kling.task.status"] for event in task_span.events]  # type: ignore[index]
    assert statuses[0] == "submitted"
    assert statuses[-1] == "succeed"
    assert task_span.status.status_code is StatusCode.UNSET

    assert len(polls) == server.stats.routes["query"] >= 1
    for poll in polls:
        assert poll.parent is not None
        assert poll.parent.span_id == task_span.context.span_id
        assert poll.attributes is not None
        assert poll.attributes["kling.task.id"] == task.id

    assert download.parent is not None
    assert download.parent.span_id == handler.context.span_id
    assert [link.context.span_id for link in download.links] == [task_span.context.span_id]
    assert download.attributes is not None
    assert download.attributes["kling.download.size"] == path.stat().st_size > 0

    values = list(attribute_values(telemetry.spans))
    assert not any(API_KEY in value for value in values)
    assert not any(PROMPT in value for value in values)


async def test_a_download_outside_any_span_is_a_child_of_the_task_span(
    server: FakeKlingServer, telemetry: Telemetry, tmp_path: Path
) -> None:
    """With no current span (a background worker), the download continues the task's trace."""
    async with client_for(server) as client:
        telemetry_handle = instrument(client, **hooks(telemetry))
        task = await client.text_to_video(PROMPT)
        done = await client.wait(task, timeout=10)
        # The task's span outlives its end for what follows: a context to continue it.
        context = telemetry_handle.context(done)
        assert trace.get_current_span(context).get_span_context().span_id != 0
        path = await client.download(done, tmp_path)
    size = path.stat().st_size
    (task_span,) = telemetry.named("kling.task")
    (download,) = telemetry.named("kling.download")
    assert task_span.parent is None
    assert download.parent is not None
    assert download.parent.span_id == task_span.context.span_id
    assert not download.links
    assert telemetry.total("kling.download.size") == size > 0
    assert telemetry.total("kling.download.duration", kling__task__kind="text2video") == 1


async def test_webhook_flow_links_callbacks_to_the_task(telemetry: Telemetry) -> None:
    """Callbacks become spans linked to the task span; the GET they cause is a child of the
    task span; refused callbacks are counted by reason; the token is never recorded."""
    receiver = WebhookReceiver(token=TOKEN)
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.15)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as server,
        listening(receiver) as url,
    ):
        receiver.public_url = url
        client = kling.KlingClient(
            api_key=API_KEY,
            provider=kling.local_emulator(server.url),
            retry=FAST_RETRY,
            poll=SLOW_POLL,
            webhook=receiver,
        )
        async with client:
            instrument(client, **hooks(telemetry))
            task = await client.text_to_video(PROMPT)
            done = await client.wait(task, timeout=20)
            assert done.succeeded
            assert await post(f"{url}?token=not-the-token-at-all", b"{}") == 403
            assert await post(url, b"{}") == 401

    (task_span,) = telemetry.named("kling.task")
    callbacks = [
        span
        for span in telemetry.named("kling.callback")
        if span.attributes is not None and span.attributes["kling.callback.reason"] == "accepted"
    ]
    assert callbacks, "the emulator's callbacks were seen"
    for span in callbacks:
        assert [link.context.span_id for link in span.links] == [task_span.context.span_id]
        assert span.attributes is not None
        assert span.attributes["kling.task.id"] == task.id
    assert any(event.name == "kling.callback" for event in task_span.events)
    # The watcher checks the task once, when the unsigned "succeed" arrives: in the task's trace.
    (poll,) = telemetry.named(QUERY_SPAN)
    assert poll.parent is not None
    assert poll.parent.span_id == task_span.context.span_id

    accepted = sum(1 for record in server.callbacks if record.status == 200)
    assert (
        telemetry.total("kling.callback.received", kling__callback__reason="accepted") == accepted
    )
    assert (
        telemetry.total(
            "kling.callback.received",
            kling__callback__reason="wrong token",
            http__response__status_code=403,
        )
        == 1
    )
    assert telemetry.total("kling.callback.received", kling__callback__reason="missing token") == 1
    refused = [span for span in telemetry.named("kling.callback") if not span.links]
    assert len(refused) == 2
    assert all(span.status.status_code is StatusCode.ERROR for span in refused)
    metric_values = [
        str(value)
        for name in ("kling.callback.received", "http.client.request.duration")
        for point in telemetry.points(name)
        for value in point.attributes.values()
    ]
    for text in (*attribute_values(telemetry.spans), *metric_values):
        assert TOKEN not in text
        assert "not-the-token-at-all" not in text
        assert API_KEY not in text


async def test_batch_metrics_count_1302_and_1303(telemetry: Telemetry) -> None:
    """After a batch that met both slow-down codes, every metric agrees with the server."""
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.15)
    async with FakeKlingServer(
        api_key=API_KEY, timeline=timeline, max_active_tasks=2, rate_limit=8, rate_burst=3
    ) as server:
        async with client_for(server) as client:
            instrument(client, **hooks(telemetry))
            tasks = await client.submit_many(
                [kling.TextToVideo(prompt=f"Shot {n}", mode="std") for n in range(6)]
            )
            async with client.watch(tasks, timeout=30) as results:
                finished = [done async for done in results]
            assert all(done.succeeded for done in finished)
            rate = client.limiter.current_rate  # type: ignore[attr-defined]

        codes = server.stats.codes
        assert codes[1302] > 0
        assert codes[1303] > 0
        assert telemetry.total("kling.api.throttled", kling__throttle__reason="1302") == codes[1302]
        assert telemetry.total("kling.api.throttled", kling__throttle__reason="1303") == codes[1303]
        api_requests = [record for record in server.requests if record.site == "api"]
        assert telemetry.total("http.client.request.duration") == len(api_requests)
        assert (
            telemetry.total("http.client.request.duration", http__response__status_code=429)
            == codes[1302] + codes[1303]
        )
        assert telemetry.total("http.client.request.duration", error__type="429") == (
            codes[1302] + codes[1303]
        )

        kind = {"kling__task__kind": "text2video", "kling__mode": "std"}
        assert telemetry.total("kling.task.created", **kind) == 6
        assert telemetry.total("kling.task.finished", **kind, kling__task__status="succeed") == 6
        assert telemetry.total("kling.task.finished", kling__task__status="failed") == 0
        assert telemetry.total("kling.task.duration", **kind) == 6
        assert telemetry.total("kling.task.detection_latency", **kind) == 6
        assert telemetry.total("kling.task.active") == 0
        # One slot acquisition per submission, plus one more per 1303 that re-queued it.
        assert telemetry.total("kling.slot.wait.duration") == 6 + codes[1303]
        assert telemetry.total("kling.rate_limiter.wait.duration") >= 1
        (usage,) = telemetry.points("kling.slot.usage")
        assert usage.value == 0
        (current,) = telemetry.points("kling.rate_limiter.rate")
        assert current.value == pytest.approx(rate)
        assert telemetry.total("kling.task.expired") == 0


async def test_failed_and_expired_tasks(telemetry: Telemetry) -> None:
    """A failed task's span is an error and counts as failed; an expired one counts as expired."""
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.1)
    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as server,
        client_for(server) as client,
    ):
        instrument(client, **hooks(telemetry))
        failing = await client.text_to_video("FAIL on purpose")
        with pytest.raises(kling.TaskFailedError):
            await client.wait(failing, timeout=10)
        server.timeline = Timeline(queue_seconds=30, processing_seconds=30)
        slow = await client.text_to_video("Takes its time")
        with pytest.raises(kling.WaitTimeoutError):
            await client.wait(slow, timeout=0.2)
    failed_span, expired_span = telemetry.named("kling.task")
    assert failed_span.status.status_code is StatusCode.ERROR
    assert failed_span.status.description == "content risk control"
    assert failed_span.attributes is not None
    assert failed_span.attributes["kling.task.status"] == "failed"
    assert expired_span.status.status_code is StatusCode.ERROR
    assert expired_span.attributes is not None
    assert expired_span.attributes["kling.task.status"] == "expired"
    assert telemetry.total("kling.task.finished", kling__task__status="failed") == 1
    assert telemetry.total("kling.task.expired", kling__task__kind="text2video") == 1
    assert telemetry.total("kling.task.active") == 0


async def test_prompts_only_when_asked_and_turning_it_off(
    server: FakeKlingServer, telemetry: Telemetry
) -> None:
    """``record_prompts=True`` puts the prompt on the task span; ``uninstrument()`` stops all."""
    async with client_for(server) as client:
        handle = instrument(client, record_prompts=True, **hooks(telemetry))
        assert "on" in repr(handle)
        task = await client.text_to_video(PROMPT)
        pending = await client.text_to_video("Never watched")
        await client.wait(task, timeout=10)
        handle.uninstrument()
        handle.uninstrument()
        assert not handle.active
        assert "off" in repr(handle)
        count = len(telemetry.spans)
        await client.wait(pending, timeout=10)
        assert len(telemetry.spans) == count
        assert len(client.events) == 0
    first, second = telemetry.named("kling.task")
    assert first.attributes is not None
    assert first.attributes["kling.prompt"] == PROMPT
    # The unfinished task's span was ended when the integration was turned off.
    assert second.attributes is not None
    assert second.attributes["kling.prompt"] == "Never watched"
    assert "kling.task.status" not in second.attributes
    assert telemetry.points("kling.slot.usage") == []
    assert trace.get_current_span(handle.context("no-such-task")) is trace.get_current_span()


async def test_tasks_created_elsewhere_get_a_span_when_watched(
    server: FakeKlingServer, telemetry: Telemetry
) -> None:
    """A task this client did not create (a resumed batch) gets its span at its first check."""
    async with client_for(server) as creator, client_for(server) as watcher:
        task = await creator.text_to_video(PROMPT)
        handle = instrument(watcher, **hooks(telemetry))
        await watcher.wait(task, timeout=10)
        handle.uninstrument()
    (task_span,) = telemetry.named("kling.task")
    assert task_span.attributes is not None
    assert task_span.attributes["kling.task.status"] == "succeed"
    assert "kling.model" not in task_span.attributes
    assert telemetry.total("kling.task.created") == 0
    assert telemetry.total("kling.task.finished", kling__task__kind="text2video") == 1


def test_throttle_reasons() -> None:
    """1302 and 1303 by their codes; a bare 429 (a gateway without a code) as 429."""

    def event(status: int | None, code: int | None) -> RequestCompleted:
        error = RateLimitError("slow down", status=status or 0, code=code)
        return RequestCompleted("GET", "videos/text2video", "http://h/", 0.1, status, 0, error)

    assert throttle_reason(event(429, 1302)) == "1302"
    assert throttle_reason(event(429, 1303)) == "1303"
    assert throttle_reason(event(429, None)) == "429"
    assert throttle_reason(event(None, None)) is None
    assert throttle_reason(RequestCompleted("GET", "x", "http://h/", 0.1, 200)) is None


def test_every_metric_is_in_the_guide() -> None:
    """The guide's table lists exactly the metrics the integration records."""
    guide = (Path(__file__).parent.parent / "docs" / "guides" / "observability.md").read_text()
    rows = {line.split("`")[1] for line in guide.splitlines() if line.startswith("| `")}
    assert rows >= {spec.name for spec in METRICS}


async def test_instrument_uses_the_global_providers_by_default(server: FakeKlingServer) -> None:
    """Without providers the API's globals are used (no-op ones here): nothing breaks."""
    async with client_for(server) as client:
        handle = instrument(client)
        task = await client.text_to_video(PROMPT)
        with anyio.fail_after(10):
            assert (await client.wait(task, timeout=10)).succeeded
        handle.uninstrument()


async def test_the_fastapi_example_with_telemetry(telemetry: Telemetry) -> None:
    """The example's optional setup instruments its client: its tasks show up as spans."""
    timeline = Timeline(queue_seconds=0.05, processing_seconds=0.2)

    def telemetry_on(client: kling.KlingClient) -> None:
        instrument(client, **hooks(telemetry))

    async with (
        FakeKlingServer(api_key=API_KEY, timeline=timeline) as kling_server,
        serving(kling_server, telemetry=telemetry_on) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        answer = await http.post("/videos", json={"prompt": PROMPT})
        task_id = answer.json()["task_id"]
        with anyio.fail_after(10):
            events = await read_events(http, 1)
        assert events[0]["status"] == "succeed"
    (task_span,) = telemetry.named("kling.task")
    assert task_span.attributes is not None
    assert task_span.attributes["kling.task.id"] == task_id
    assert task_span.attributes["kling.task.status"] == "succeed"
    assert telemetry.total("kling.callback.received", kling__callback__reason="accepted") >= 1


async def test_without_check_spans_status_checks_are_only_counted(
    server: FakeKlingServer, telemetry: Telemetry
) -> None:
    """``check_spans=False``: no GET spans, the same request metric, task spans as before."""
    async with client_for(server) as client:
        instrument(client, check_spans=False, **hooks(telemetry))
        task = await client.text_to_video(PROMPT)
        await client.wait(task, timeout=10)
    assert telemetry.named(QUERY_SPAN) == []
    assert len(telemetry.named("POST videos/text2video")) == 1
    (task_span,) = telemetry.named("kling.task")
    assert task_span.attributes is not None
    assert task_span.attributes["kling.task.status"] == "succeed"
    checks = server.stats.routes["query"]
    assert checks >= 1
    assert telemetry.total("http.client.request.duration", http__request__method="GET") == checks


async def test_a_failed_download_is_an_error_span_and_counted(
    server: FakeKlingServer, telemetry: Telemetry, tmp_path: Path
) -> None:
    """A download that cannot succeed: an error span, a duration point with error.type, no bytes."""
    async with client_for(server) as client:
        instrument(client, **hooks(telemetry))
        done = await client.wait(await client.text_to_video(PROMPT), timeout=10)
        # Nothing listens on port 9 of the loopback: every attempt is refused.
        gone = attrs.evolve(done, videos=(kling.Video(id="v1", url="http://127.0.0.1:9/v.mp4"),))
        with pytest.raises(kling.DownloadError):
            await client.download(gone, tmp_path)
    (download,) = telemetry.named("kling.download")
    assert download.status.status_code is StatusCode.ERROR
    assert download.attributes is not None
    assert download.attributes["error.type"] == "DownloadError"
    assert telemetry.total("kling.download.duration", error__type="DownloadError") == 1
    assert telemetry.total("kling.download.size") == 0


def test_the_registry_ends_the_oldest_span_beyond_its_bound(telemetry: Telemetry) -> None:
    """Tasks submitted and never watched cannot grow the registry without bound."""
    tracer = telemetry.tracer_provider.get_tracer("test")
    registry = TaskRegistry(max_open=1, max_finished=1)
    tasks = [
        kling.Task(
            id=str(n),
            kind=TEXT_TO_VIDEO,
            status=kling.TaskStatus.SUBMITTED,
            external_task_id=f"ext-{n}",
        )
        for n in range(3)
    ]
    for task in tasks:
        registry.open(task, OpenTask(tracer.start_span("kling.task"), {}, 0, "submitted"))
    assert len(registry) == 1
    assert registry.get("2") is not None
    assert registry.find(attrs.evolve(tasks[2], id="gateway-id")) is registry.get("2")
    evicted = [span for span in telemetry.named("kling.task") if span.attributes]
    assert len(evicted) == 2
    assert all(
        span.attributes is not None and span.attributes["kling.task.evicted"] for span in evicted
    )
    # Only the newest finished context is kept.
    assert registry.span_context("0") is None
    assert registry.span_context("1") is not None
    registry.end_all()
    assert len(registry) == 0
    assert len(telemetry.named("kling.task")) == 3


async def test_two_watchers_of_one_task_count_it_once(
    server: FakeKlingServer, telemetry: Telemetry
) -> None:
    """Both watchers report the task finished; the metrics count one task."""
    async with client_for(server) as client:
        instrument(client, **hooks(telemetry))
        task = await client.text_to_video(PROMPT)
        async with client.watch([task]) as first, client.watch([task]) as second:
            assert [done.id async for done in first] == [task.id]
            assert [done.id async for done in second] == [task.id]
    assert telemetry.total("kling.task.finished") == 1
    assert telemetry.total("kling.task.duration") == 1
    assert telemetry.total("kling.task.active") == 0
    assert len(telemetry.named("kling.task")) == 1


def test_the_submitted_event_never_shows_the_prompt() -> None:
    """TaskSubmitted carries the request for the integration, but its repr leaves it out."""
    task = kling.Task(id="1", kind=TEXT_TO_VIDEO, status=kling.TaskStatus.SUBMITTED)
    event = TaskSubmitted(task, kling.TextToVideo(prompt=PROMPT), 0.5)
    assert event.request is not None
    assert PROMPT not in repr(event)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"record_prompts": "no"}, "record_prompts must be True or False"),
        ({"check_spans": 0}, "check_spans must be True or False"),
        ({"tracer_provider": "console"}, "tracer_provider must be an OpenTelemetry provider"),
        ({"meter_provider": object()}, "meter_provider must be an OpenTelemetry provider"),
    ],
)
async def test_arguments_of_the_wrong_kind_are_refused(options: dict[str, Any], named: str) -> None:
    """``record_prompts="no"`` would have recorded prompts (a non-empty string is true); the
    error comes before anything is attached to the client."""
    client = kling.KlingClient(api_key=API_KEY)
    with pytest.raises(kling.ConfigurationError, match=named):
        instrument(client, **options)
    assert not client.events
    with pytest.raises(kling.ConfigurationError, match="takes a KlingClient"):
        instrument("client")  # type: ignore[arg-type]
