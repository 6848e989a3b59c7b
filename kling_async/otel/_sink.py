"""The event sink that turns the client's events into spans and metric points.

Spans are made from events after the fact, with the start time the event's duration implies:
the client's code paths carry no tracing calls, and an uninstrumented client pays nothing.

Parents: a request about one task (a status check, the confirming GET of a webhook, a refresh
before a download) is a child of that task's ``kling.task`` span, whichever task group sent it;
the task span is a child of whatever span was current when ``submit()`` was called (a FastAPI
handler's, say), or when ``watch()`` started tracking a task created elsewhere. Everything else is
a child of the current span where the event happened.
"""

from __future__ import annotations

import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from kling_async.events import (
    CallbackReceived,
    DownloadFinished,
    Event,
    LimiterWaited,
    RequestCompleted,
    SlotAcquired,
    TaskExpired,
    TaskFinished,
    TaskPolled,
    TaskSubmitted,
)
from kling_async.models import Task, TaskRequest

from . import _names as n
from ._http import RequestAttributes, split_path, throttle_reason
from ._metrics import Instruments
from ._tasks import OpenTask, TaskRegistry, metric_attributes

__all__ = ["TelemetrySink"]


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class TelemetrySink:
    """An [`EventSink`][kling_async.events.EventSink] recording spans and metrics.

    Args:
        tracer: where spans go.
        instruments: where metric points go.
        record_prompts: put the prompt on the task span (``kling.prompt``); off by default,
            since prompts may be personal data.
        check_spans: make spans for status checks (GET requests) too; without them those
            requests are only counted in metrics.
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        instruments: Instruments,
        *,
        record_prompts: bool,
        check_spans: bool = True,
    ) -> None:
        self._tracer = tracer
        self._metrics = instruments
        self._record_prompts = record_prompts
        self._check_spans = check_spans
        self.tasks = TaskRegistry()
        """The tasks this sink follows."""
        self._request_attributes = RequestAttributes()

    def __call__(self, event: Event) -> None:
        """Record *event*."""
        if isinstance(event, RequestCompleted):
            self._request(event)
        elif isinstance(event, TaskPolled):
            self._polled(event.task)
        elif isinstance(event, TaskSubmitted):
            self._submitted(event.task, event.request, event.duration)
        elif isinstance(event, TaskFinished):
            self._finished(event.task)
        elif isinstance(event, TaskExpired):
            self._expired(event.task)
        elif isinstance(event, SlotAcquired):
            self._metrics.slot_wait.record(event.waited)
        elif isinstance(event, LimiterWaited):
            self._metrics.limiter_wait.record(event.waited)
        elif isinstance(event, DownloadFinished):
            self._download(event)
        elif isinstance(event, CallbackReceived):
            self._callback(event)

    def context_for(self, task_id: str) -> otel_context.Context | None:
        """A context whose current span is task *task_id*'s, if it is known."""
        span_context = self.tasks.span_context(task_id)
        if span_context is None:
            return None
        return trace.set_span_in_context(trace.NonRecordingSpan(span_context))

    # -- requests ------------------------------------------------------------------------------

    def _request(self, event: RequestCompleted) -> None:
        template, task_id = split_path(event.path)
        attributes = self._request_attributes(event, template)
        self._metrics.request_duration.record(event.duration, attributes)
        reason = throttle_reason(event)
        if reason is not None:
            self._metrics.throttled.add(1, {n.ATTR_THROTTLE_REASON: reason})
        if not self._check_spans and event.method == "GET":
            return
        span_attributes = dict(attributes)
        span_attributes[n.ATTR_URL_FULL] = event.url
        if event.attempt:
            span_attributes[n.ATTR_RESEND_COUNT] = event.attempt
        code = getattr(event.error, "code", None)
        if isinstance(code, int | str):
            span_attributes[n.ATTR_API_CODE] = code
        if task_id is not None:
            span_attributes[n.ATTR_TASK_ID] = task_id
        parent = self.context_for(task_id) if task_id is not None else None
        end = time.time_ns()
        span = self._tracer.start_span(
            f"{event.method} {template}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=span_attributes,
            start_time=end - _ns(event.duration),
        )
        if event.error is not None:
            span.set_status(Status(StatusCode.ERROR, type(event.error).__name__))
        span.end(end_time=end)

    # -- tasks ---------------------------------------------------------------------------------

    def _open(self, task: Task, request: TaskRequest | None, start_ns: int) -> OpenTask:
        attributes = metric_attributes(task, request)
        span_attributes = dict(attributes)
        span_attributes[n.ATTR_TASK_ID] = task.id
        if task.external_task_id:
            span_attributes[n.ATTR_EXTERNAL_ID] = task.external_task_id
        prompt = getattr(request, "prompt", None)
        if self._record_prompts and prompt:
            span_attributes[n.ATTR_PROMPT] = prompt
        span = self._tracer.start_span(n.SPAN_TASK, attributes=span_attributes, start_time=start_ns)
        entry = OpenTask(span, attributes, start_ns, task.status.value)
        self.tasks.open(task, entry)
        self._metrics.active.add(1, attributes)
        return entry

    def _submitted(self, task: Task, request: TaskRequest | None, duration: float | None) -> None:
        start = time.time_ns() - _ns(duration or 0.0)
        entry = self._open(task, request, start)
        entry.span.add_event(n.ATTR_TASK_STATUS, {n.ATTR_TASK_STATUS: task.status.value})
        self._metrics.created.add(1, entry.attributes)
        if task.is_finished:
            self._finished(task)

    def _polled(self, task: Task) -> None:
        entry = self.tasks.get(task.id)
        if entry is None:
            if task.is_finished or self.tasks.was_closed(task.id):
                return
            # Created elsewhere (a resumed batch): its span starts when this client first sees it.
            entry = self._open(task, None, time.time_ns())
        status = task.status.value
        if status != entry.status:
            entry.status = status
            entry.span.add_event(n.ATTR_TASK_STATUS, {n.ATTR_TASK_STATUS: status})

    def _finished(self, task: Task) -> None:
        now_ns = time.time_ns()
        if task.id not in self.tasks and self.tasks.was_closed(task.id):
            return  # a second watcher of the same task: counted already
        entry = self.tasks.close(task.id)
        attributes = entry.attributes if entry is not None else metric_attributes(task, None)
        final = dict(attributes)
        final[n.ATTR_TASK_STATUS] = task.status.value
        self._metrics.finished.add(1, final)
        duration = _server_duration(task)
        if duration is None and entry is not None:
            duration = (now_ns - entry.started_ns) / 1e9
        if duration is not None:
            self._metrics.task_duration.record(duration, final)
        if task.updated_at is not None:
            seen = now_ns / 1e9 - task.updated_at.timestamp()
            self._metrics.detection_latency.record(max(0.0, seen), attributes)
        if entry is None:
            return
        self._metrics.active.add(-1, attributes)
        span = entry.span
        if entry.status != task.status.value:
            span.add_event(n.ATTR_TASK_STATUS, {n.ATTR_TASK_STATUS: task.status.value})
        span.set_attribute(n.ATTR_TASK_STATUS, task.status.value)
        if task.failed:
            span.set_status(Status(StatusCode.ERROR, task.status_msg or "task failed"))
        span.end(end_time=now_ns)

    def _expired(self, task: Task) -> None:
        if task.id not in self.tasks and self.tasks.was_closed(task.id):
            return
        entry = self.tasks.close(task.id)
        attributes = entry.attributes if entry is not None else metric_attributes(task, None)
        self._metrics.expired.add(1, attributes)
        if entry is None:
            return
        self._metrics.active.add(-1, attributes)
        entry.span.set_attribute(n.ATTR_TASK_STATUS, "expired")
        entry.span.set_status(Status(StatusCode.ERROR, "deadline passed before it finished"))
        entry.span.end()

    # -- downloads and callbacks ---------------------------------------------------------------

    def _links(self, task_id: str) -> tuple[otel_context.Context | None, list[Link]]:
        """Parent and links of a span about a task: joined to the current trace if there is
        one (linked to the task's), else a child of the task's own span."""
        task_span = self.tasks.span_context(task_id)
        if task_span is None:
            return None, []
        if trace.get_current_span().get_span_context().is_valid:
            return None, [Link(task_span)]
        return trace.set_span_in_context(trace.NonRecordingSpan(task_span)), []

    def _download(self, event: DownloadFinished) -> None:
        task = event.task
        attributes = dict(metric_attributes(task, None))
        if event.error is not None:
            attributes[n.ATTR_ERROR_TYPE] = type(event.error).__name__
        self._metrics.download_duration.record(event.duration, attributes)
        if event.error is None:
            self._metrics.download_size.add(event.size, metric_attributes(task, None))
        parent, links = self._links(task.id)
        end = time.time_ns()
        span_attributes = dict(attributes)
        span_attributes[n.ATTR_TASK_ID] = task.id
        span_attributes["kling.download.size"] = event.size
        span = self._tracer.start_span(
            n.SPAN_DOWNLOAD,
            context=parent,
            links=links,
            attributes=span_attributes,
            start_time=end - _ns(event.duration),
        )
        if event.error is not None:
            span.set_status(Status(StatusCode.ERROR, type(event.error).__name__))
        span.end(end_time=end)

    def _callback(self, event: CallbackReceived) -> None:
        outcome: dict[str, str | int] = {
            n.ATTR_STATUS_CODE: event.status,
            n.ATTR_CALLBACK_REASON: event.reason,
        }
        self._metrics.callbacks.add(1, outcome)
        span_attributes = dict(outcome)
        links: list[Link] = []
        task = event.task
        if task is not None:
            span_attributes[n.ATTR_TASK_ID] = task.id
            span_attributes[n.ATTR_TASK_STATUS] = task.status.value
            entry = self.tasks.find(task)
            if entry is not None:
                entry.span.add_event(n.SPAN_CALLBACK, span_attributes)
                links.append(Link(entry.span.get_span_context()))
            else:
                task_span = self.tasks.span_context(task.id)
                if task_span is not None:
                    links.append(Link(task_span))
        # A child of the web framework's request span, when it has one; linked to the task.
        span = self._tracer.start_span(n.SPAN_CALLBACK, attributes=span_attributes, links=links)
        if event.status >= 400:
            span.set_status(Status(StatusCode.ERROR, event.reason))
        span.end()


def _server_duration(task: Task) -> float | None:
    """Seconds from the server's creation stamp to its last update, when it sent both."""
    if task.created_at is None or task.updated_at is None:
        return None
    return max(0.0, (task.updated_at - task.created_at).total_seconds())
