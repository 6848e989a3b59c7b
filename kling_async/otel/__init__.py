"""OpenTelemetry traces and metrics for a [`KlingClient`][kling_async.client.KlingClient]: one call turns them on.

Needs the ``otel`` extra (``pip install "kling-async[otel]"``), which is ``opentelemetry-api``
only: which SDK and exporter (if any) the spans and metrics go to is the application's choice.
Without an SDK configured the API's no-op providers are used, and nothing is recorded.

Everything is built on the client's event stream ([`kling_async.events`][kling_async.events]): the integration is
one more event sink, so an uninstrumented client runs exactly as before.

Example::

    from kling_async.otel import instrument

    async with KlingClient() as client:
        telemetry = instrument(client)  # global tracer and meter providers
        ...
        telemetry.uninstrument()        # optional: closing the client is enough

See the observability guide for the span tree, the metrics table and a JSON logging recipe.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

from kling_async.client import KlingClient
from kling_async.errors import ConfigurationError
from kling_async.models import Task

from ._metrics import Instruments
from ._names import METRICS, MetricSpec
from ._sink import TelemetrySink

__all__ = ["METRICS", "Instrumentation", "MetricSpec", "instrument"]

_SCOPE = "kling_async"


def _library_version() -> str:
    try:
        return version("kling-async")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "0"


class Instrumentation:
    """The integration attached to one client; made by [`instrument`][kling_async.otel.instrument].

    Args:
        client: the client to follow.
        tracer_provider: where spans go; the global provider when ``None``.
        meter_provider: where metrics go; the global provider when ``None``.
        record_prompts: also record each task's prompt on its span (``kling.prompt``).
        check_spans: a span for every status check (see [`instrument`][kling_async.otel.instrument]).
    """

    def __init__(
        self,
        client: KlingClient,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        record_prompts: bool = False,
        check_spans: bool = True,
    ) -> None:
        _check_arguments(client, tracer_provider, meter_provider, record_prompts, check_spans)
        release = _library_version()
        tracer = trace.get_tracer(_SCOPE, release, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, release, meter_provider=meter_provider)
        self._client = client
        self._instruments = Instruments(meter, client)
        self._sink = TelemetrySink(
            tracer, self._instruments, record_prompts=record_prompts, check_spans=check_spans
        )
        self._active = True
        client.events.add(self._sink)

    def __repr__(self) -> str:
        state = "on" if self._active else "off"
        return f"Instrumentation({state}, open_tasks={len(self._sink.tasks)})"

    @property
    def active(self) -> bool:
        """``True`` until [`uninstrument`][kling_async.otel.Instrumentation.uninstrument]."""
        return self._active

    def context(self, task: Task | str) -> otel_context.Context:
        """A context whose current span is *task*'s ``kling.task`` span.

        Attach it where work about the task continues outside the client (a worker that
        post-processes the file), so that its spans join the task's trace::

            token = opentelemetry.context.attach(telemetry.context(task))
            try:
                ...
            finally:
                opentelemetry.context.detach(token)

        Args:
            task: a task (or task id) this client created or watched recently.

        Returns:
            that context, or the current one when the task is not known.
        """
        found = self._sink.context_for(task.id if isinstance(task, Task) else task)
        return found if found is not None else otel_context.get_current()

    def uninstrument(self) -> None:
        """Stop recording: unsubscribe, end the spans of unfinished tasks. Safe to call twice."""
        if not self._active:
            return
        self._active = False
        self._client.events.remove(self._sink)
        self._instruments.enabled = False
        self._sink.tasks.end_all()


def instrument(
    client: KlingClient,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    record_prompts: bool = False,
    check_spans: bool = True,
) -> Instrumentation:
    """Record *client*'s requests, tasks, downloads and callbacks as spans and metrics.

    Callbacks count too when the client was given its receiver (``KlingClient(webhook=...)``
    or [`for_client`][kling_async.webhooks.WebhookReceiver.for_client]).

    Args:
        client: the client to instrument.
        tracer_provider: where spans go; the global provider when ``None``.
        meter_provider: where metrics go; the global provider when ``None``.
        record_prompts: also put each task's prompt on its span. Off by default: prompts may be
            personal data. The API key and the callback token are never recorded.
        check_spans: a span for every status check (the GETs that are most of a client's
            requests). ``False`` keeps them out of traces, which costs far less when thousands
            of tasks are polled; they still count in ``http.client.request.duration``, and
            task spans still record each status change.

    Returns:
        the [`Instrumentation`][kling_async.otel.Instrumentation], to turn it off again or to continue a task's trace.
    """
    return Instrumentation(
        client,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        record_prompts=record_prompts,
        check_spans=check_spans,
    )


def _check_arguments(
    client: object,
    tracer_provider: object,
    meter_provider: object,
    record_prompts: object,
    check_spans: object,
) -> None:
    """Refuse arguments of the wrong kind before anything is attached to *client*.

    ``record_prompts="no"`` must not record prompts because a non-empty string is true.
    """
    if not isinstance(client, KlingClient):
        raise ConfigurationError(f"instrument() takes a KlingClient, got {type(client).__name__}")
    for name, flag in (("record_prompts", record_prompts), ("check_spans", check_spans)):
        if not isinstance(flag, bool):
            raise ConfigurationError(f"{name} must be True or False, got {flag!r}")
    for name, provider, method in (
        ("tracer_provider", tracer_provider, "get_tracer"),
        ("meter_provider", meter_provider, "get_meter"),
    ):
        if provider is not None and not callable(getattr(provider, method, None)):
            raise ConfigurationError(
                f"{name} must be an OpenTelemetry provider (with {method}()) or None, "
                f"got {type(provider).__name__}"
            )
