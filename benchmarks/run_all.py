"""Run the benchmarks in turn (``make bench``); each prints its own table.

Run: ``.venv/bin/python benchmarks/run_all.py``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_default_policy
import bench_fleet
import bench_makespan
import bench_memory
import bench_otel
import bench_readme_pattern
import bench_requests_per_task
import bench_throughput
import bench_tight_budget
import bench_webhooks
from _plot import Point, write_svg

PLOT = Path(__file__).resolve().parent / "detection_vs_requests.svg"


def main() -> int:
    """Run every benchmark with its default sizes; return the process exit status."""
    results = {}
    for module in (
        bench_throughput,
        bench_requests_per_task,
        bench_default_policy,
        bench_tight_budget,
        bench_makespan,
        bench_readme_pattern,
        bench_memory,
        bench_webhooks,
        bench_otel,
        bench_fleet,
    ):
        started = time.perf_counter()
        print(f"\n##### {module.__name__}", flush=True)
        results[module.__name__] = module.main([])
        print(f"({time.perf_counter() - started:.1f} s)", flush=True)
    path = write_svg(
        PLOT,
        "p95 detection latency vs requests per task (make bench)",
        plot_points(results["bench_requests_per_task"], results["bench_default_policy"]),
    )
    print(f"\nplot written to {path.name}")
    return 0


def plot_points(requests: dict[str, Any], default_policy: dict[str, Any]) -> list[Point]:
    """The plotted strategies: every row of the two request-count benchmarks."""
    points = [Point(row["name"], row["requests_per_task"], row["p95"]) for row in requests["rows"]]
    points.extend(
        Point(f"CometAPI, {row['name']}", row["requests_per_task"], row["p95_median"])
        for row in default_policy["rows"]
    )
    return points


if __name__ == "__main__":
    sys.exit(main())
