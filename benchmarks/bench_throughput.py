"""Status-check throughput: the client's scheduler vs a raw aiohttp GET loop, same concurrency.

Both sides check the same never-finishing tasks on the emulator (``--queue-seconds 1e9``, run in
a child process on 127.0.0.1 so that the measured process holds only the client side):

* **library**: ``client.watch(tasks)`` with ``rate=None``, no list endpoint (one GET per check,
  as on CometAPI) and a policy with ~zero intervals, so checks run back to back with
  ``max_in_flight=C``. A check is counted when the scheduler starts it (nobody listens to
  events, as in a script without a progress display).
* **baseline**: C coroutines each doing ``session.get(url, headers=auth)`` in a loop over the
  same task URLs, on equal footing with the library: a session without cookies
  (``DummyCookieJar``, as the library's) and the body decoded as the library decodes a UTF-8
  object (``json.loads(body.decode())``, which skips ``json``'s encoding sniffing), checking
  the answer's ``code``. It keeps aiohttp's default time limit (5 minutes a request), as a
  raw loop does unless it sets one; the library's client passes its own limit (60 s by
  default) and keeps it with one timer for all requests in flight (``kling_async._deadlines``)
  rather than aiohttp's timer per request. ``--raw-no-time-limit`` runs the raw loop with no
  time limit at all, to show what that timer costs it.

Two variants: answers that repeat between checks (a task's state changes rarely, so most
answers do; the library then skips decoding them, see ``wire.fingerprint``) and, with
``--changing`` (``make bench`` runs both), answers that all differ (the emulator stamps each
one's ``updated_at``), so every check decodes and parses a fresh answer on both sides.

A round sets both sides up side by side (the baseline's session and the library's client and
watcher, over the same emulator) and lets them take turns of ``--turn`` seconds in ABBA order
(baseline, library, library, baseline, ...): the side whose turn it is not waits before starting
a check, and the checks in flight when a turn ends finish in a short uncounted pause. Each side
thus runs warm, in its steady state, and short turns follow the machine's speed, which on a
shared 2-core host swings by up to 2x within a second or two (a raw loop sampled every 0.25 s
gave 3,100 to 6,000 checks/s); setting a side up afresh per window, as this script used to,
left each window at the mercy of those swings. A turn's checks are those it started. A round's
ratio pools its turns; the ratio is reported per round, with its min / median / max.

Turns last 0.05 s by default. The swings are faster than a second: an A/A run (the raw loop
against an identical raw loop, six 4-second rounds per setting) spread with a standard deviation
of 0.065 at 0.25 s turns, 0.07 at 0.5 s, 0.023-0.040 at 0.1 s and 0.011 at 0.05 s. With
``--variant changing`` or ``both``, every round of changing answers is followed by such an A/A
round (``--no-control`` skips it), so that a reader sees the noise next to the figure. The
calibration runs the same turns with the twin spinning 5 and 10 us of CPU per check.

Run: ``.venv/bin/python benchmarks/bench_throughput.py`` (``--profile`` adds a cProfile of one
library window).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import itertools
import json
import pstats
import time
from collections.abc import Coroutine, Sequence
from typing import Any, NamedTuple

import aiohttp
import anyio
from _common import (
    API_KEY,
    CheckCounter,
    emulator_provider,
    make_client,
    never_finishing,
    percentile,
    print_table,
    verdict,
)

import kling_async as kling

TARGET = 0.9

_raw_session_options: dict[str, Any] = {}
"""Extra ``ClientSession`` options of the raw loop: ``--raw-no-time-limit`` sets
``timeout=aiohttp.ClientTimeout()`` (no time limit at all, which no careful script runs with,
but which shows what aiohttp's own per-request timer costs the raw loop)."""


def _tight_policy(concurrency: int) -> kling.PollPolicy:
    tiny = 1e-9
    return kling.PollPolicy(
        first_delay=tiny,
        min_interval=tiny,
        max_interval=tiny,
        jitter=0.0,
        max_in_flight=concurrency,
    )


class _Window(NamedTuple):
    rate: float
    """Checks per second."""
    cpu_per_check: float
    """CPU seconds this process spent per check (client side only; the emulator is elsewhere)."""


async def _library_window(
    url: str,
    tasks: Sequence[kling.Task],
    concurrency: int,
    warmup: float,
    window: float,
    profiler: cProfile.Profile | None = None,
) -> _Window:
    """Checks per second of ``client.watch`` over *tasks* during *window* (after *warmup*)."""
    async with make_client(url, supports_list=False, poll=_tight_policy(concurrency)) as client:
        checks = CheckCounter(client)
        async with client.watch(tasks):
            await anyio.sleep(warmup)
            checks.counting = True
            if profiler is not None:
                profiler.enable()
            started, cpu = time.perf_counter(), time.process_time()
            await anyio.sleep(window)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            if profiler is not None:
                profiler.disable()
            checks.counting = False
    return _Window(checks.count / elapsed, cpu / max(checks.count, 1))


def _raw_session() -> aiohttp.ClientSession:
    """The raw loop's session, on equal footing with the library's (no cookies)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100),
        cookie_jar=aiohttp.DummyCookieJar(),
        **_raw_session_options,
    )


class _Turns:
    """Whose turn it is to start checks: ``"baseline"``, ``"library"`` or nobody (``None``).

    A side whose turn it is not waits for its turn before starting a check; checks in flight
    when a turn ends finish in the uncounted pause between turns.
    """

    def __init__(self) -> None:
        self.side: str | None = None
        self.counts = {"baseline": 0, "library": 0}
        self._opened = {"baseline": anyio.Event(), "library": anyio.Event()}

    def open(self, side: str) -> None:
        self.side = side
        self._opened[side].set()

    def close(self) -> None:
        if self.side is not None:
            self._opened[self.side] = anyio.Event()
        self.side = None

    async def wait_for(self, side: str) -> None:
        while self.side != side:
            await self._opened[side].wait()


async def _interleaved(
    url: str,
    tasks: Sequence[kling.Task],
    task_urls: Sequence[str],
    concurrency: int,
    warmup: float,
    slices: int,
    slice_s: float,
    pause: float = 0.03,
    control: bool = False,
    burn_us: float = 0.0,
) -> tuple[_Window, _Window]:
    """Both sides set up side by side, taking turns of *slice_s* in ABBA order; pooled figures.

    Each side keeps its connections and warm state across its turns, so that a turn measures
    its steady state, and short turns follow the machine's speed, which on a shared host swings
    by up to 2x within seconds (see ``benchmarks/README.md``).

    With *control*, the "library" side is a second raw loop, identical to the baseline (an A/A
    run): its ratio would be 1.00x on a quiet machine, and its spread is the noise a round of
    this length carries. *burn_us* makes that twin spin so many microseconds of CPU per check
    (a busy wait), which shows what a given amount of extra work per check costs the ratio.
    """
    turns = _Turns()
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    cycle = itertools.cycle(task_urls)
    async with (
        _raw_session() as session,
        _raw_session() as twin,
        make_client(url, supports_list=False, poll=_tight_policy(concurrency)) as client,
    ):

        async def raw_worker(side: str, session: aiohttp.ClientSession, burn_us: float) -> None:
            while True:
                if turns.side != side:
                    await turns.wait_for(side)
                turns.counts[side] += 1
                async with session.get(next(cycle), headers=headers) as response:
                    body = json.loads((await response.read()).decode())
                if body["code"] != 0:
                    raise RuntimeError(f"emulator answered {body!r}")
                if burn_us:
                    until = time.perf_counter() + burn_us * 1e-6
                    while time.perf_counter() < until:
                        pass

        poll = client._poll

        async def library_later(task: kling.Task) -> kling.Task:
            await turns.wait_for("library")
            turns.counts["library"] += 1
            return await poll(task)

        def library_check(task: kling.Task) -> Coroutine[Any, Any, kling.Task]:
            # A plain function on its turn: no coroutine of the measurement's own per check.
            if turns.side == "library":
                turns.counts["library"] += 1
                return poll(task)
            return library_later(task)

        client._poll = library_check  # type: ignore[method-assign]
        totals = {side: [0, 0.0, 0.0] for side in ("baseline", "library")}  # checks, s, CPU s

        async def turn(side: str, seconds: float, counted: bool) -> None:
            before = turns.counts[side]
            started, cpu = time.perf_counter(), time.process_time()
            turns.open(side)
            await anyio.sleep(seconds)
            turns.close()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            if counted:
                total = totals[side]
                total[0] += turns.counts[side] - before
                total[1] += elapsed
                total[2] += cpu
            await anyio.sleep(pause)  # the turn's checks in flight finish, uncounted

        async with anyio.create_task_group() as group, contextlib.AsyncExitStack() as stack:
            if not control:
                await stack.enter_async_context(client.watch(tasks))
            for _ in range(concurrency):
                group.start_soon(raw_worker, "baseline", session, 0.0)
                if control:
                    group.start_soon(raw_worker, "library", twin, burn_us)
            for side in ("baseline", "library"):
                await turn(side, warmup, counted=False)
            for index in range(slices):
                order = ("baseline", "library") if index % 2 == 0 else ("library", "baseline")
                for side in order:
                    await turn(side, slice_s, counted=True)
            group.cancel_scope.cancel()
    base, lib = totals["baseline"], totals["library"]
    return (
        _Window(base[0] / base[1], base[2] / max(base[0], 1)),
        _Window(lib[0] / lib[1], lib[2] / max(lib[0], 1)),
    )


async def run(
    *,
    tasks: int = 256,
    concurrency: int = 16,
    window: float = 5.0,
    warmup: float = 1.0,
    rounds: int = 3,
    profile: bool = False,
    changing: bool = False,
    turn: float = 0.25,
    calibrate: bool = False,
    control: bool = False,
) -> dict[str, Any]:
    """Measure both sides; return checks/s for each and their ratio.

    With *control*, each round is followed by an A/A round of the same length (the raw loop
    against an identical raw loop), whose ratios show the noise a round carries on this machine.
    """
    async with never_finishing(tasks, "tput", changing=changing) as (url, created):
        provider = emulator_provider(url)
        task_urls = [provider.url(f"{task.kind.path}/{task.id}") for task in created]
        # Each round alternates the sides in ABBA order over short turns: the machine's speed
        # drifts on a scale of seconds, and adjacent turns share its state.
        each = window / rounds
        slices = max(2, round(each / turn))
        base_rates: list[_Window] = []
        lib_rates: list[_Window] = []
        control_ratios: list[float] = []
        for _ in range(rounds):
            base, lib = await _interleaved(
                url, created, task_urls, concurrency, warmup, slices, each / slices
            )
            base_rates.append(base)
            lib_rates.append(lib)
            if control:
                first, twin = await _interleaved(
                    url,
                    created,
                    task_urls,
                    concurrency,
                    warmup,
                    slices,
                    each / slices,
                    control=True,
                )
                control_ratios.append(twin.rate / first.rate)
        calibration = (
            await _calibration(url, created, task_urls, concurrency, warmup, slices, each / slices)
            if calibrate
            else {}
        )
        profile_text = ""
        if profile:
            profiler = cProfile.Profile()
            await _library_window(url, created, concurrency, warmup, window, profiler)
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(25)
            profile_text = out.getvalue()
    baseline = sum(w.rate for w in base_rates) / len(base_rates)
    library = sum(w.rate for w in lib_rates) / len(lib_rates)
    base_cpu = sum(w.cpu_per_check for w in base_rates) / len(base_rates)
    lib_cpu = sum(w.cpu_per_check for w in lib_rates) / len(lib_rates)
    round_ratios = [lib.rate / base.rate for lib, base in zip(lib_rates, base_rates, strict=True)]
    return {
        "changing": changing,
        "tasks": tasks,
        "concurrency": concurrency,
        "window_s": window,
        "baseline_checks_per_s": baseline,
        "library_checks_per_s": library,
        "ratio": library / baseline if baseline else float("nan"),
        "round_ratios": round_ratios,
        "median_round_ratio": percentile(round_ratios, 50),
        "min_round_ratio": min(round_ratios),
        "max_round_ratio": max(round_ratios),
        "baseline_rounds": [w.rate for w in base_rates],
        "library_rounds": [w.rate for w in lib_rates],
        "baseline_cpu_us_per_check": base_cpu * 1e6,
        "library_cpu_us_per_check": lib_cpu * 1e6,
        "cpu_ratio": lib_cpu / base_cpu if base_cpu else float("nan"),
        "profile": profile_text,
        "calibration": calibration,
        "control_round_ratios": control_ratios,
    }


BURNS_US = (5.0, 10.0)


async def _calibration(
    url: str,
    tasks: Sequence[kling.Task],
    urls: Sequence[str],
    concurrency: int,
    warmup: float,
    slices: int,
    slice_s: float,
) -> dict[float, float]:
    """What a ratio means in microseconds on this machine: the raw loop with a fixed amount of
    extra CPU per check (a busy wait), against the raw loop alone, one round of turns each.

    On a 2-core machine extra client work costs more than itself: the client's syscalls get
    dearer as it falls behind the server, so the ratio a few microseconds buy is measured, not
    computed.
    """
    ratios: dict[float, float] = {}
    for burn in BURNS_US:
        plain, burned = await _interleaved(
            url, tasks, urls, concurrency, warmup, slices, slice_s, control=True, burn_us=burn
        )
        ratios[burn] = burned.rate / plain.rate
    return ratios


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse *argv*, run the benchmark, print and return the figures.

    With ``--variant both`` (the default) the figures returned are the repeating answers',
    with the changing answers' under ``"changing_variant"``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--window", type=float, default=12.0, help="seconds measured per side")
    parser.add_argument("--warmup", type=float, default=0.3, help="seconds before each window")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each with its own ratio")
    parser.add_argument(
        "--turn", type=float, default=0.05, help="seconds of one turn of a side within a round"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one library window")
    parser.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="skip timing the raw loop with a few microseconds of extra work per check",
    )
    parser.add_argument(
        "--variant",
        choices=("repeating", "changing", "both"),
        default="both",
        help="answers that repeat between checks, that all differ, or both in turn",
    )
    parser.add_argument(
        "--no-control",
        dest="control",
        action="store_false",
        help="skip the A/A rounds (the raw loop against an identical raw loop)",
    )
    parser.add_argument(
        "--raw-no-time-limit",
        action="store_true",
        help="run the raw loop with no time limit at all (aiohttp's default is 5 minutes)",
    )
    args = parser.parse_args(argv)
    _raw_session_options.clear()
    if args.raw_no_time_limit:
        _raw_session_options["timeout"] = aiohttp.ClientTimeout()
    variants = [False, True] if args.variant == "both" else [args.variant == "changing"]
    sizes = ("tasks", "concurrency", "window", "warmup", "rounds", "profile", "turn")
    settings = {name: getattr(args, name) for name in sizes}
    results = [
        asyncio.run(
            run(
                **settings,
                changing=changing,
                calibrate=index == 0 and args.calibrate,
                control=changing and args.control,
            )
        )
        for index, changing in enumerate(variants)
    ]
    for result in results:
        _print(result)
    first = results[0]
    if len(results) > 1:
        first["changing_variant"] = results[1]
    return first


def _print(result: dict[str, Any]) -> None:
    answers = "every answer differs" if result["changing"] else "answers repeat between checks"
    print_table(
        f"status-check throughput (emulator in a child process, instant answers; {answers})",
        [
            ("tasks / concurrency", f"{result['tasks']} / {result['concurrency']}"),
            (
                "raw loop's time limit",
                "none (--raw-no-time-limit)"
                if _raw_session_options
                else "aiohttp's default (5 min a request)",
            ),
            ("raw aiohttp GET loop, checks/s", result["baseline_checks_per_s"]),
            ("client.watch scheduler, checks/s", result["library_checks_per_s"]),
            ("per round (baseline)", ", ".join(f"{r:.0f}" for r in result["baseline_rounds"])),
            ("per round (library)", ", ".join(f"{r:.0f}" for r in result["library_rounds"])),
            ("client CPU per check, baseline (us)", result["baseline_cpu_us_per_check"]),
            ("client CPU per check, library (us)", result["library_cpu_us_per_check"]),
            ("CPU per check, library/baseline", f"{result['cpu_ratio']:.2f}x"),
            ("ratio of the averages", f"{result['ratio']:.2f}x"),
            (
                f"per-round ratio min / median / max (target >= {TARGET} in every round)",
                f"{result['min_round_ratio']:.2f} / {result['median_round_ratio']:.2f} / "
                f"{result['max_round_ratio']:.2f}x  "
                f"{verdict(result['min_round_ratio'] >= TARGET)}",
            ),
        ],
    )
    control = result["control_round_ratios"]
    if control:
        print_table(
            "A/A control: the raw loop against an identical raw loop, rounds of the same length",
            [
                ("per round", ", ".join(f"{r:.2f}x" for r in control)),
                (
                    "min / median / max (1.00x on a quiet machine; the spread is the noise)",
                    f"{min(control):.2f} / {percentile(control, 50):.2f} / {max(control):.2f}x",
                ),
            ],
        )
    if result["calibration"]:
        print_table(
            "calibration: the raw loop with extra CPU per check (a busy wait) vs the raw loop",
            [
                (f"+{burn:g} us per check, checks/s ratio", f"{ratio:.2f}x")
                for burn, ratio in result["calibration"].items()
            ],
        )
    if result["profile"]:
        print("\n-- cProfile of one library window (by own time) --")
        print(result["profile"])


if __name__ == "__main__":
    main()
