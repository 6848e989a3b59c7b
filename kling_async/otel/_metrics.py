"""The metric instruments, made once per instrumented client from one meter.

Gauges read the client's own state (slots in use, the limiter's rate) when the SDK collects;
nothing here keeps a second count of what the client already knows.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import metrics

from . import _names as n

if TYPE_CHECKING:
    from kling_async.client import KlingClient

__all__ = ["Instruments"]


class Instruments:
    """Every instrument of [`METRICS`][kling_async.otel.METRICS].

    Args:
        meter: where the instruments come from.
        client: the client whose slots and limiter the gauges read (held weakly).
    """

    def __init__(self, meter: metrics.Meter, client: KlingClient) -> None:
        self._client = weakref.ref(client)
        self.enabled = True
        """``False`` once the integration is off: the gauges then report nothing."""

        def seconds(name: str, description: str) -> metrics.Histogram:
            # Every duration is in seconds, on the same buckets.
            return meter.create_histogram(
                name,
                unit="s",
                description=description,
                explicit_bucket_boundaries_advisory=n.DURATION_BUCKETS,
            )

        def counter(name: str, unit: str, description: str) -> metrics.Counter:
            return meter.create_counter(name, unit=unit, description=description)

        def gauge(name: str, callback: metrics.CallbackT, unit: str, description: str) -> None:
            meter.create_observable_gauge(
                name, callbacks=[callback], unit=unit, description=description
            )

        self.request_duration = seconds(
            "http.client.request.duration", "Duration of HTTP client requests."
        )
        self.throttled = counter(
            "kling.api.throttled", "{response}", "Answers that said slow down."
        )
        self.created = counter("kling.task.created", "{task}", "Tasks created.")
        self.finished = counter("kling.task.finished", "{task}", "Tasks seen finished.")
        self.expired = counter("kling.task.expired", "{task}", "Tasks that passed their deadline.")
        self.active = meter.create_up_down_counter(
            "kling.task.active", unit="{task}", description="Tasks not yet seen finished."
        )
        self.task_duration = seconds("kling.task.duration", "Task creation to final status.")
        self.detection_latency = seconds(
            "kling.task.detection_latency", "Final status on the server to seen by the client."
        )
        self.slot_wait = seconds(
            "kling.slot.wait.duration", "Time a submission waited for a task slot."
        )
        self.limiter_wait = seconds(
            "kling.rate_limiter.wait.duration", "Time a request waited for the rate limiter."
        )
        self.download_duration = seconds(
            "kling.download.duration", "Time per download, retries included."
        )
        self.download_size = counter("kling.download.size", "By", "Bytes of finished downloads.")
        self.callbacks = counter(
            "kling.callback.received", "{callback}", "Webhook callbacks answered."
        )
        gauge("kling.slot.usage", self._slot_usage, "{task}", "Task slots held now.")
        gauge("kling.slot.limit", self._slot_limit, "{task}", "Task slots usable now.")
        gauge(
            "kling.rate_limiter.rate",
            self._rate,
            "{request}/s",
            "The request rate the limiter allows now.",
        )

    def _read(self, owner: str, name: str) -> float | None:
        client = self._client() if self.enabled else None
        if client is None:
            return None
        # Custom slots and limiters need not have these properties: then there is nothing to show.
        value = getattr(getattr(client, owner), name, None)
        return value if isinstance(value, int | float) else None

    def _observe(self, value: float | None) -> Iterable[metrics.Observation]:
        return [] if value is None else [metrics.Observation(value)]

    def _slot_usage(self, _: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return self._observe(self._read("slots", "in_use"))

    def _slot_limit(self, _: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return self._observe(self._read("slots", "limit"))

    def _rate(self, _: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        return self._observe(self._read("limiter", "current_rate"))
