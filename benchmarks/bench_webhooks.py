"""Callbacks + safety-net polling vs polling only: detection latency and requests per task.

One run, four scenarios against the in-process emulator on 127.0.0.1, each with the same batch:

* ``polling only``: the default poll policy, time-scaled;
* ``callbacks``: every task submitted with a ``callback_url``, a receiver on 127.0.0.1 feeding the
  watcher, polling only every ``callback_interval`` (scaled);
* ``callbacks, 20% lost``: the same with a fifth of the callbacks dropped by the emulator, to show
  what the safety net costs when callbacks go missing;
* ``KlingClient(webhook=)``: callbacks again, wired by the client itself (it fills in the callback
  URL, and the watcher makes the confirming check) instead of ``receiver.track``.

Time is scaled by ``SCALE`` (real seconds x SCALE): tasks of ~100-200 s last 2-4 s here, the
default 5 s first check becomes 0.1 s and the 120 s callback safety net 2.4 s. Latency is
measured from the emulator's finish time to the moment the watcher yields the task (both on
``time.monotonic``); it is reported in benchmark milliseconds, not scaled back. The emulator
posts callbacks on a 20 ms tick, which is part of the callback latency.

Run: ``python benchmarks/bench_webhooks.py`` (about 15 s). The provider is told it cannot list
tasks, as on CometAPI, so every status check is one GET; requests are not paced (``rate=None``),
since a real request rate would be 50x too strict in scaled time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
from aiohttp import web

import kling_async as kling
from kling_async.testing import FakeKlingServer, Timeline
from kling_async.webhooks import WebhookReceiver, aiohttp_handler

API_KEY = "bench-key-0123456789abcdef"
SCALE = 0.02
DEFAULT = kling.PollPolicy()
POLL = kling.PollPolicy(
    first_delay=DEFAULT.first_delay * SCALE,
    min_interval=DEFAULT.min_interval * SCALE,
    max_interval=DEFAULT.max_interval * SCALE,
    callback_interval=DEFAULT.callback_interval * SCALE,
)
TIMELINE = Timeline(queue_seconds=10 * SCALE, processing_seconds=150 * SCALE, jitter=0.33)


@attrs.frozen
class Outcome:
    """What one scenario measured."""

    name: str
    latencies: list[float]
    checks: int
    requests: int

    @property
    def p95(self) -> float:
        """95th percentile latency (nearest rank), seconds."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def row(self) -> str:
        """One line of the results table."""
        tasks = len(self.latencies)
        return (
            f"{self.name:<22} {tasks:>5} {statistics.median(self.latencies) * 1000:>10.1f} "
            f"{self.p95 * 1000:>8.1f} {max(self.latencies) * 1000:>8.1f} "
            f"{self.checks / tasks:>12.2f} {self.requests / tasks:>14.2f}"
        )


@contextlib.asynccontextmanager
async def listening(receiver: WebhookReceiver) -> AsyncIterator[str]:
    """Serve *receiver* on 127.0.0.1; yield the callback URL (with its token)."""
    app = web.Application()
    app.router.add_post("/cb", aiohttp_handler(receiver))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield receiver.callback_url(f"http://127.0.0.1:{runner.addresses[0][1]}/cb")
    finally:
        await runner.cleanup()


async def scenario(
    name: str, tasks: int, *, callbacks: bool, drop_rate: float = 0.0, integrated: bool = False
) -> Outcome:
    """Submit *tasks* tasks, watch them to the end, and measure.

    With *integrated*, the receiver is given to the client (``KlingClient(webhook=...)``): the
    client fills in the callback URL and an unsigned final status makes the watcher check the
    task at once. Otherwise callbacks are wired by hand (``receiver.track``), confirmed by the
    receiver's own GET.
    """
    async with FakeKlingServer(
        api_key=API_KEY, timeline=TIMELINE, callback_drop_rate=drop_rate, seed=7
    ) as server:
        provider = attrs.evolve(kling.local_emulator(server.url), supports_list=False)
        if integrated:
            receiver = WebhookReceiver()
            async with listening(receiver) as url:
                receiver.public_url = url.split("?", 1)[0]
                async with kling.KlingClient(
                    api_key=API_KEY,
                    provider=provider,
                    poll=POLL,
                    rate=None,
                    timeout=30.0,
                    webhook=receiver,
                ) as client:
                    requests = [kling.TextToVideo(prompt=f"bench {i}") for i in range(tasks)]
                    submitted = await client.submit_many(requests)
                    async with client.watch(submitted, timeout=120) as results:
                        latencies = [
                            time.monotonic() - server.tasks[done.id].finished_at
                            async for done in results
                        ]
        else:
            async with kling.KlingClient(
                api_key=API_KEY, provider=provider, poll=POLL, rate=None, timeout=30.0
            ) as client:
                receiver = WebhookReceiver.for_client(client)
                async with (
                    listening(receiver) as url,
                    receiver,
                    client.watch(timeout=120) as results,
                ):
                    requests = [
                        kling.TextToVideo(
                            prompt=f"bench {i}", callback_url=url if callbacks else None
                        )
                        for i in range(tasks)
                    ]
                    for task in await client.submit_many(requests):
                        if callbacks:
                            receiver.track(results, task)
                        else:
                            results.add(task)
                    results.close()
                    latencies = [
                        time.monotonic() - server.tasks[done.id].finished_at
                        async for done in results
                    ]
        routes = server.stats.routes
        checks = routes["query"] + routes["list"]
        return Outcome(name, latencies, checks, checks + routes["create"])


async def run(tasks: int) -> dict[str, Any]:
    """Run the four scenarios, print the table and the ratios, and return the figures."""
    started = time.monotonic()
    polling = await scenario("polling only", tasks, callbacks=False)
    hooked = await scenario("callbacks", tasks, callbacks=True)
    lossy = await scenario("callbacks, 20% lost", tasks, callbacks=True, drop_rate=0.2)
    integrated = await scenario("KlingClient(webhook=)", tasks, callbacks=True, integrated=True)
    print(f"{tasks} tasks of ~{150 * SCALE:.0f} s each (time scale {SCALE}: real s x {SCALE})")
    print(
        f"{'scenario':<22} {'tasks':>5} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} "
        f"{'checks/task':>12} {'requests/task':>14}"
    )
    for outcome in (polling, hooked, lossy, integrated):
        print(outcome.row())
    median_ratio = statistics.median(polling.latencies) / statistics.median(hooked.latencies)
    print(
        f"callbacks vs polling only: {polling.checks / max(1, hooked.checks):.1f}x fewer status "
        f"checks, {median_ratio:.1f}x lower median detection latency"
    )
    print(f"run time {time.monotonic() - started:.1f} s")
    return {
        outcome.name: {
            "median": statistics.median(outcome.latencies),
            "p95": outcome.p95,
            "checks_per_task": outcome.checks / tasks,
            "requests_per_task": outcome.requests / tasks,
            "yielded": len(outcome.latencies),
        }
        for outcome in (polling, hooked, lossy, integrated)
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line and run; returns the figures by scenario name."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.tasks))


if __name__ == "__main__":
    main()
