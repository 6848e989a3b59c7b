"""The OpenTelemetry SDK with in-memory exporters, and readers for what they caught."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class Telemetry:
    """A tracer provider and a meter provider whose output the test can read."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    def shutdown(self) -> None:
        """Release both providers."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        """Every finished span, in the order they ended."""
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> list[ReadableSpan]:
        """The finished spans called *name*."""
        return [span for span in self.spans if span.name == name]

    def points(self, name: str) -> list[Any]:
        """The data points of metric *name* (empty when it recorded nothing)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, name: str, **attributes: Any) -> float:
        """The sum of counter *name* (or count of histogram *name*) over points matching
        *attributes* (dots in attribute names written as ``__``)."""
        wanted = {key.replace("__", "."): value for key, value in attributes.items()}
        total = 0.0
        for point in self.points(name):
            if all(point.attributes.get(key) == value for key, value in wanted.items()):
                total += point.count if hasattr(point, "count") else point.value
        return total


def attribute_values(spans: tuple[ReadableSpan, ...]) -> Iterator[str]:
    """Every attribute value of every span, its events and its links, as text."""
    for span in spans:
        sources: list[Mapping[str, Any] | None] = [span.attributes]
        sources.extend(event.attributes for event in span.events)
        sources.extend(link.attributes for link in span.links)
        for attributes in sources:
            for value in (attributes or {}).values():
                yield str(value)
        if span.status.description:
            yield span.status.description
