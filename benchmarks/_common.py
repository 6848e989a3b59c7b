"""Helpers shared by the benchmark scripts: emulator start-up, clients, statistics, output.

Every benchmark talks only to the local emulator on 127.0.0.1; nothing here opens a connection
anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import sys
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

import kling_async as kling

API_KEY = "bench-key-0123456789abcdef"
"""The emulator's accepted key (a local test value, not a secret)."""

FAST_RETRY = kling.RetryPolicy(base=0.01, cap=0.05, jitter=0.0)
"""Retries that do not stretch a benchmark when the emulator hiccups."""


def emulator_provider(
    url: str, *, supports_list: bool = True, api_style: kling.ApiStyle = kling.ApiStyle.LEGACY
) -> kling.Provider:
    """The emulator provider at *url*, optionally pretending it cannot list (like CometAPI),
    or reading tasks by id with Kling's new-standard API."""
    provider = kling.local_emulator(url, api_style=api_style)
    return attrs.evolve(provider, supports_list=supports_list)


def make_client(
    url: str,
    *,
    supports_list: bool = True,
    poll: kling.PollPolicy | None = None,
    max_active_tasks: int | None = None,
    api_key: str = API_KEY,
    api_style: kling.ApiStyle = kling.ApiStyle.LEGACY,
) -> kling.KlingClient:
    """A client for the emulator at *url* with no request pacing (``rate=None``)."""
    return kling.KlingClient(
        api_key=api_key,
        provider=emulator_provider(url, supports_list=supports_list, api_style=api_style),
        retry=FAST_RETRY,
        rate=None,
        poll=poll,
        max_active_tasks=max_active_tasks,
        timeout=30.0,
    )


class CheckCounter:
    """Counts the status checks a client's watchers make, while ``counting`` is set.

    Wraps the client's status check (what ``watch()`` hands its scheduler: ``get_task``
    keeping no raw answer of a running task) with an instance attribute, read when a
    watcher is made; no event listener is added, so the client runs as a script's would.

    The wrapper is a plain function that counts a check as it starts and hands back the
    check's own coroutine: an ``async def`` around it would add a coroutine and a frame to
    resume at each of the request's suspensions, a cost of the measurement that the raw loop
    does not pay. In a window of thousands of checks, counting at the start rather than the
    end shifts the count by at most the checks in flight at its edges, which cancel out.
    """

    def __init__(self, client: kling.KlingClient) -> None:
        self.count = 0
        self.counting = False
        poll = client._poll

        def counted(task: kling.Task) -> Coroutine[Any, Any, kling.Task]:
            if self.counting:
                self.count += 1
            return poll(task)

        client._poll = counted  # type: ignore[method-assign]


def scaled_policy(policy: kling.PollPolicy, scale: float) -> kling.PollPolicy:
    """*policy* with every time field multiplied by *scale*."""
    expected = policy.expected
    return attrs.evolve(
        policy,
        first_delay=policy.first_delay * scale,
        min_interval=policy.min_interval * scale,
        max_interval=policy.max_interval * scale,
        callback_interval=policy.callback_interval * scale,
        list_interval=policy.list_interval * scale,
        detect_gap=policy.detect_gap * scale,
        expected=None if expected is None else (expected[0] * scale, expected[1] * scale),
    )


def prompts(count: int, prefix: str = "bench") -> list[kling.TextToVideo]:
    """*count* distinct text-to-video requests."""
    return [
        kling.TextToVideo(prompt=f"{prefix} prompt {i}", external_task_id=f"{prefix}-{i}")
        for i in range(count)
    ]


@contextlib.asynccontextmanager
async def emulator_process(
    *,
    queue_seconds: float,
    processing_seconds: float,
    api_key: str = API_KEY,
    options: Sequence[str] = (),
) -> AsyncIterator[str]:
    """Run the emulator in a child process on 127.0.0.1; yield its API base URL.

    A separate process gives the client under test the whole of its own core, so a throughput
    comparison measures the client side rather than the emulator sharing its event loop.
    *options* are further command-line options of ``python -m kling_async.testing``.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kling_async.testing",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--api-key",
        api_key,
        "--queue-seconds",
        repr(queue_seconds),
        "--processing-seconds",
        repr(processing_seconds),
        *options,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        url = line.decode().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"emulator did not start (first line {line!r})")
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


def percentile(values: Sequence[float], pct: float) -> float:
    """The *pct* percentile (0-100) of *values* by linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rss_bytes() -> int:
    """The resident set size of this process right now, after a full garbage collection."""
    gc.collect()
    statm = Path("/proc/self/statm")
    if statm.exists():
        resident_pages = int(statm.read_text().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    import resource

    # ru_maxrss is the peak (KiB on Linux, bytes on macOS): only usable while memory grows.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def print_table(title: str, rows: Iterable[tuple[str, Any]]) -> None:
    """Print *rows* as an aligned two-column table under *title*."""
    materialised = [(label, _fmt(value)) for label, value in rows]
    width = max((len(label) for label, _ in materialised), default=0)
    print(f"\n== {title}")
    for label, value in materialised:
        print(f"  {label.ljust(width)}  {value}")


def print_grid(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print a table with a header row; columns are right-aligned after the first."""
    body = [[_fmt(cell) for cell in row] for row in rows]
    table = [list(header), *body]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print(f"\n== {title}")
    for index, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        print("  " + "  ".join(cells))
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))


def verdict(ok: bool) -> str:
    """``"MET"`` or ``"MISSED"``."""
    return "MET" if ok else "MISSED"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


@contextlib.asynccontextmanager
async def never_finishing(
    count: int, prefix: str, *, changing: bool = False
) -> AsyncIterator[tuple[str, list[kling.Task]]]:
    """The emulator in a child process holding *count* tasks that never finish; yield its URL
    and the tasks. With *changing*, every answer differs (the emulator restamps each)."""
    options = ("--restamp-answers",) if changing else ()
    async with emulator_process(queue_seconds=1e9, processing_seconds=1.0, options=options) as url:
        async with make_client(url, supports_list=False) as client:
            created = await client.submit_many(prompts(count, prefix))
        yield url, created
