"""Names of the spans, metrics and attributes, in one place (the docs' table lists the same).

OpenTelemetry's semantic conventions are used where one exists (``http.*``, ``url.*``,
``server.*``, ``error.type``); everything else is ``kling.*``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "ATTR_API_CODE",
    "ATTR_CALLBACK_REASON",
    "ATTR_ERROR_TYPE",
    "ATTR_EXTERNAL_ID",
    "ATTR_METHOD",
    "ATTR_MODE",
    "ATTR_MODEL",
    "ATTR_PROMPT",
    "ATTR_RESEND_COUNT",
    "ATTR_SERVER_ADDRESS",
    "ATTR_SERVER_PORT",
    "ATTR_STATUS_CODE",
    "ATTR_TASK_ID",
    "ATTR_TASK_KIND",
    "ATTR_TASK_STATUS",
    "ATTR_THROTTLE_REASON",
    "ATTR_URL_FULL",
    "ATTR_URL_TEMPLATE",
    "DURATION_BUCKETS",
    "METRICS",
    "MetricSpec",
    "SPAN_CALLBACK",
    "SPAN_DOWNLOAD",
    "SPAN_TASK",
]

# Semantic-convention attributes (HTTP client spans and metrics).
ATTR_METHOD = "http.request.method"
ATTR_STATUS_CODE = "http.response.status_code"
ATTR_RESEND_COUNT = "http.request.resend_count"
ATTR_URL_FULL = "url.full"
ATTR_URL_TEMPLATE = "url.template"
ATTR_SERVER_ADDRESS = "server.address"
ATTR_SERVER_PORT = "server.port"
ATTR_ERROR_TYPE = "error.type"

# The library's own attributes.
ATTR_TASK_ID = "kling.task.id"
ATTR_TASK_KIND = "kling.task.kind"
ATTR_TASK_STATUS = "kling.task.status"
ATTR_EXTERNAL_ID = "kling.task.external_id"
ATTR_MODEL = "kling.model"
ATTR_MODE = "kling.mode"
ATTR_PROMPT = "kling.prompt"
ATTR_API_CODE = "kling.api.code"
ATTR_THROTTLE_REASON = "kling.throttle.reason"
ATTR_CALLBACK_REASON = "kling.callback.reason"

SPAN_TASK = "kling.task"
SPAN_DOWNLOAD = "kling.download"
SPAN_CALLBACK = "kling.callback"

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
"""Histogram buckets in seconds: HTTP requests at the low end, whole tasks at the high end."""


class MetricSpec(NamedTuple):
    """One metric: its name, instrument, unit and meaning."""

    name: str
    instrument: str
    unit: str
    description: str


METRICS = (
    MetricSpec(
        "http.client.request.duration",
        "histogram",
        "s",
        "API requests (each attempt) by method, url.template, status code and error.type",
    ),
    MetricSpec(
        "kling.api.throttled",
        "counter",
        "{response}",
        "answers that said slow down, by kling.throttle.reason: 1302, 1303 or 429",
    ),
    MetricSpec("kling.task.created", "counter", "{task}", "tasks created, by kind, model and mode"),
    MetricSpec(
        "kling.task.finished",
        "counter",
        "{task}",
        "tasks seen finished, by kind, model, mode and kling.task.status (succeed or failed)",
    ),
    MetricSpec(
        "kling.task.expired",
        "counter",
        "{task}",
        "tasks whose deadline passed before they finished, by kind, model and mode",
    ),
    MetricSpec(
        "kling.task.active",
        "updowncounter",
        "{task}",
        "tasks created (or first seen) here and not yet seen finished or expired",
    ),
    MetricSpec(
        "kling.task.duration",
        "histogram",
        "s",
        "creation to final status: the server's created_at and updated_at where the answer "
        "has both, else submit() to seen finished",
    ),
    MetricSpec(
        "kling.task.detection_latency",
        "histogram",
        "s",
        "the server's updated_at of a final status to this client seeing it",
    ),
    MetricSpec(
        "kling.slot.wait.duration",
        "histogram",
        "s",
        "time each submission waited for a task slot (0 when one was free)",
    ),
    MetricSpec("kling.slot.usage", "gauge", "{task}", "task slots held now"),
    MetricSpec("kling.slot.limit", "gauge", "{task}", "task slots usable now (after 1303s)"),
    MetricSpec(
        "kling.rate_limiter.wait.duration",
        "histogram",
        "s",
        "time a request waited for the rate limiter (only requests that waited)",
    ),
    MetricSpec(
        "kling.rate_limiter.rate", "gauge", "{request}/s", "the request rate the limiter allows now"
    ),
    MetricSpec(
        "kling.download.duration",
        "histogram",
        "s",
        "time per download(), retries included, by kind and error.type",
    ),
    MetricSpec("kling.download.size", "counter", "By", "bytes of finished downloads, by kind"),
    MetricSpec(
        "kling.callback.received",
        "counter",
        "{callback}",
        "webhook callbacks answered, by http.response.status_code and kling.callback.reason",
    ),
)
"""Every metric the integration records."""
