"""Instrumentation overhead: status-check throughput with OpenTelemetry on and off.

The same never-finishing tasks (emulator in a child process on 127.0.0.1, as in
``bench_throughput.py``) are checked back to back by ``client.watch`` with concurrency C, in four
modes that alternate round by round:

* **off**: no event sink at all (checks are counted by wrapping the client's status check);
* **sink**: one no-op event sink, what any progress display costs (events are built);
* **api**: ``instrument(client)`` on the OpenTelemetry API's no-op providers (no SDK installed);
* **sdk**: ``instrument(client)`` on the SDK: every span goes through a ``SimpleSpanProcessor`` to
  an exporter that drops it, every metric point into the SDK's aggregation;
* **sdk-lean**: the same with ``check_spans=False`` (status checks only counted in metrics);
* **sdk-10%**: the same as **sdk** with a ``ParentBased(TraceIdRatioBased(0.1))`` sampler, as a
  production setup usually has (spans of unsampled traces are not recorded).

Target: **sdk** at most 10 % slower than **off**. CPU per check is reported too: it depends less
on what else the machine runs than checks per second do.

Run: ``.venv/bin/python benchmarks/bench_otel.py``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from _common import CheckCounter, make_client, never_finishing, print_table, verdict
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

import kling_async as kling
from kling_async.events import Event
from kling_async.otel import instrument

MODES = ("off", "sink", "api", "sdk", "sdk-lean", "sdk-10%")
TARGET = 0.9


class _DropSpans(SpanExporter):
    """An exporter that accepts every span and sends it nowhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _setup(mode: str, client: kling.KlingClient) -> Callable[[], None]:
    """Put *client* in *mode*; return what undoes it."""
    if mode == "sink":

        def ignore(event: Event) -> None:
            del event

        client.events.add(ignore)
        return lambda: client.events.remove(ignore)
    if mode == "api":
        handle = instrument(
            client,
            tracer_provider=trace.NoOpTracerProvider(),
            meter_provider=metrics.NoOpMeterProvider(),
        )
        return handle.uninstrument
    if mode.startswith("sdk"):
        sampler = ParentBased(TraceIdRatioBased(0.1)) if mode == "sdk-10%" else None
        tracer_provider = TracerProvider(sampler=sampler)
        tracer_provider.add_span_processor(SimpleSpanProcessor(_DropSpans()))
        meter_provider = MeterProvider(
            metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False
        )
        handle = instrument(
            client,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            check_spans=mode != "sdk-lean",
        )

        def undo() -> None:
            handle.uninstrument()
            tracer_provider.shutdown()
            meter_provider.shutdown()

        return undo
    return lambda: None


async def _window(
    url: str, tasks: Sequence[kling.Task], mode: str, concurrency: int, warmup: float, window: float
) -> tuple[float, float]:
    """Checks per second and CPU seconds per check of one measured window in *mode*."""
    policy = kling.PollPolicy(
        first_delay=1e-9,
        min_interval=1e-9,
        max_interval=1e-9,
        jitter=0.0,
        max_in_flight=concurrency,
    )
    async with make_client(url, supports_list=False, poll=policy) as client:
        checks = CheckCounter(client)
        undo = _setup(mode, client)
        try:
            async with client.watch(tasks):
                await anyio.sleep(warmup)
                checks.counting = True
                started, cpu = time.perf_counter(), time.process_time()
                await anyio.sleep(window)
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
                checks.counting = False
        finally:
            undo()
    return checks.count / elapsed, cpu / max(checks.count, 1)


async def run(
    *,
    tasks: int = 256,
    concurrency: int = 16,
    window: float = 2.0,
    warmup: float = 0.5,
    rounds: int = 3,
) -> dict[str, Any]:
    """Measure every mode *rounds* times, alternating; return the means and the ratios."""
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpus: dict[str, list[float]] = {mode: [] for mode in MODES}
    async with never_finishing(tasks, "otel") as (url, created):
        for _ in range(rounds):
            for mode in MODES:
                rate, cpu = await _window(url, created, mode, concurrency, warmup, window)
                rates[mode].append(rate)
                cpus[mode].append(cpu)
    mean_rate = {mode: sum(values) / len(values) for mode, values in rates.items()}
    mean_cpu = {mode: sum(values) / len(values) for mode, values in cpus.items()}
    off_rate, off_cpu = mean_rate["off"], mean_cpu["off"]
    return {
        "tasks": tasks,
        "concurrency": concurrency,
        "rounds": rounds,
        "checks_per_s": mean_rate,
        "cpu_us_per_check": {mode: value * 1e6 for mode, value in mean_cpu.items()},
        "ratio": {mode: mean_rate[mode] / off_rate if off_rate else float("nan") for mode in MODES},
        "cpu_ratio": {
            mode: mean_cpu[mode] / off_cpu if off_cpu else float("nan") for mode in MODES
        },
        "rounds_checks_per_s": rates,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse *argv*, run the benchmark, print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--window", type=float, default=2.0, help="seconds measured per mode")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the modes")
    args = parser.parse_args(argv)
    result = asyncio.run(
        run(
            tasks=args.tasks,
            concurrency=args.concurrency,
            window=args.window,
            warmup=args.warmup,
            rounds=args.rounds,
        )
    )
    rows: list[tuple[str, object]] = [
        ("tasks / concurrency / rounds", f"{tasks_line(result)}"),
    ]
    rows.extend(
        (
            f"{mode}: checks/s, CPU us/check",
            f"{result['checks_per_s'][mode]:.0f}, {result['cpu_us_per_check'][mode]:.0f}",
        )
        for mode in MODES
    )
    rows.extend(
        (
            f"{mode}/off: throughput, CPU per check",
            f"{result['ratio'][mode]:.3f}x, {result['cpu_ratio'][mode]:.3f}x",
        )
        for mode in MODES[1:]
    )
    sdk = result["ratio"]["sdk"]
    rows.append(
        (f"sdk/off throughput (target >= {TARGET})", f"{sdk:.3f}x  {verdict(sdk >= TARGET)}")
    )
    print_table("instrumentation overhead (status checks, emulator in a child process)", rows)
    return result


def tasks_line(result: dict[str, Any]) -> str:
    """The sizes of a run, for the table."""
    return f"{result['tasks']} / {result['concurrency']} / {result['rounds']}"


if __name__ == "__main__":
    main()
