"""Status-check throughput of two versions of the library, side by side (issue 10's "no worse").

Each side is a child process that imports ``kling_async`` from its own source tree and runs
``client.watch`` over the same never-finishing tasks on one emulator (itself a child process,
from this tree), as ``bench_throughput.py``'s library side does: no list endpoint, no rate limit,
a policy with ~zero intervals and ``max_in_flight=16``. Only public API both versions share is
used, and both count checks where the transport reads an answer's body
(``aiohttp.ClientResponse.read``, wrapped by a plain function that adds no coroutine), with no
event listener: each pays the same small measuring cost, and neither builds events.

By default answers repeat between checks (a task's state changes rarely): the new tree does
not decode such an answer again, and 8512784 decodes each and compares it with the task's raw
answer before it would parse it; ``--changing``
makes every answer differ (the emulator restamps each), so that both sides parse every one.
The sides alternate ABBA over ``--pairs`` windows per round; a round's ratio is new / old
checks per second.

The old tree is any checkout of the package, e.g. the code before the reshaping::

    git archive 8512784 | tar -x -C /tmp/kling-old
    .venv/bin/python benchmarks/bench_versions.py --old /tmp/kling-old

Not part of ``make bench`` (it needs a second tree).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import API_KEY, never_finishing, percentile, print_table

HERE = Path(__file__).resolve().parent.parent

# Run in each side's process, with only that side's tree on the path.
_SIDE = """
import asyncio, json, sys, time
import aiohttp, anyio, attrs
import kling_async as kling

url, key, ids, warmup, window = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), *map(float, sys.argv[4:6])
listen = sys.argv[6] == "listen"

async def main():
    provider = attrs.evolve(kling.local_emulator(url), supports_list=False)
    tiny = 1e-9
    policy = kling.PollPolicy(first_delay=tiny, min_interval=tiny, max_interval=tiny, jitter=0.0,
                              max_in_flight=16)
    count, counted = 0, False
    read = aiohttp.ClientResponse.read
    def counting_read(response):
        nonlocal count
        if counted:
            count += 1
        return read(response)
    aiohttp.ClientResponse.read = counting_read
    async with kling.KlingClient(api_key=key, provider=provider, rate=None, poll=policy,
                                 timeout=30.0) as client:
        tasks = [await client.get_task(ident) for ident in ids]
        if listen:
            client.events.add(lambda event: None)
        async with client.watch(tasks):
            await anyio.sleep(warmup)
            counted = True
            started, cpu = time.perf_counter(), time.process_time()
            await anyio.sleep(window)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            counted = False
    print(json.dumps({"rate": count / elapsed, "cpu_us": cpu / max(count, 1) * 1e6,
                      "package": kling.__file__}))

asyncio.run(main())
"""


def _side(
    tree: Path, url: str, ids: Sequence[str], warmup: float, window: float, listen: bool
) -> dict[str, Any]:
    # The child runs in the tree: `python -c` puts its working folder first on the path, so
    # that is where kling_async comes from, whatever else is installed.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    args = [url, API_KEY, json.dumps(list(ids)), str(warmup), str(window)]
    args.append("listen" if listen else "quiet")
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", _SIDE, *args],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the side from {tree} failed: {tail[0]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["package"]).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"the side meant for {tree} imported {result['package']}")
    return result


async def run(
    old: Path,
    *,
    tasks: int = 256,
    rounds: int = 3,
    pairs: int = 2,
    window: float = 4.0,
    listen: bool = False,
    changing: bool = False,
) -> dict[str, Any]:
    """Alternate the two trees; return per-round rates and ratios."""
    async with never_finishing(tasks, "versions", changing=changing) as (url, created):
        ids = [task.id for task in created]
        trees = {"old": old, "new": HERE}
        per_round: list[dict[str, Any]] = []
        for _ in range(rounds):
            seen: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
            for index in range(pairs):
                order = ("old", "new") if index % 2 == 0 else ("new", "old")
                for name in order:
                    seen[name].append(
                        await asyncio.to_thread(_side, trees[name], url, ids, 0.5, window, listen)
                    )
            rates = {name: sum(w["rate"] for w in ws) / len(ws) for name, ws in seen.items()}
            cpu = {name: sum(w["cpu_us"] for w in ws) / len(ws) for name, ws in seen.items()}
            per_round.append({"rates": rates, "cpu_us": cpu, "ratio": rates["new"] / rates["old"]})
    ratios = [entry["ratio"] for entry in per_round]
    return {
        "rounds": per_round,
        "ratios": ratios,
        "min": min(ratios),
        "median": percentile(ratios, 50),
        "max": max(ratios),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse *argv*, run the comparison, print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the other source tree")
    parser.add_argument("--tasks", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=2, help="ABBA alternations per round")
    parser.add_argument("--window", type=float, default=4.0, help="seconds per window")
    parser.add_argument(
        "--listen",
        action="store_true",
        help="an event listener on both sides (events are then built for it: a progress display)",
    )
    parser.add_argument(
        "--changing",
        action="store_true",
        help="every answer differs (the emulator restamps each), so every one is parsed",
    )
    args = parser.parse_args(argv)
    if not (args.old / "kling_async" / "__init__.py").is_file():
        parser.error(f"{args.old} holds no kling_async package")
    result = asyncio.run(
        run(
            args.old,
            tasks=args.tasks,
            rounds=args.rounds,
            pairs=args.pairs,
            window=args.window,
            listen=args.listen,
            changing=args.changing,
        )
    )
    rows: list[tuple[str, Any]] = []
    for number, entry in enumerate(result["rounds"], 1):
        rates, cpu = entry["rates"], entry["cpu_us"]
        rows.append(
            (
                f"round {number}: checks/s old / new (CPU us per check)",
                f"{rates['old']:,.0f} ({cpu['old']:.0f}) / {rates['new']:,.0f} "
                f"({cpu['new']:.0f}) = {entry['ratio']:.2f}x",
            )
        )
    rows.append(
        (
            "new / old per round, min / median / max",
            f"{result['min']:.2f} / {result['median']:.2f} / {result['max']:.2f}x",
        )
    )
    listening = ", an event listener on both sides" if args.listen else ""
    answers = ", every answer differs" if args.changing else ", answers repeat"
    print_table(f"status-check throughput, this tree vs {args.old}{answers}{listening}", rows)
    return result


if __name__ == "__main__":
    main()
