"""Run every benchmark's ``main`` with tiny sizes so the scripts cannot rot.

These check that each returns sane numbers, never how fast anything is.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench() -> dict[str, ModuleType]:
    """The benchmark modules, imported from the benchmarks folder."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_makespan
        import bench_memory
        import bench_requests_per_task
        import bench_throughput
    finally:
        sys.path.remove(str(BENCHMARKS))
    return {
        "throughput": bench_throughput,
        "requests": bench_requests_per_task,
        "makespan": bench_makespan,
        "memory": bench_memory,
    }


def test_throughput(bench: dict[str, ModuleType]) -> None:
    result = bench["throughput"].main(
        [
            "--tasks",
            "8",
            "--concurrency",
            "2",
            "--window",
            "0.4",
            "--warmup",
            "0.1",
            "--rounds",
            "1",
        ]
    )
    assert result["baseline_checks_per_s"] > 0
    assert result["library_checks_per_s"] > 0
    assert math.isfinite(result["ratio"])
    assert result["ratio"] > 0


def test_requests_per_task(bench: dict[str, ModuleType]) -> None:
    result = bench["requests"].main(["--tasks", "6", "--scale", "0.002"])
    rows = result["rows"]
    assert len(rows) >= 5
    for row in rows:
        assert row["requests"] >= 1
        assert row["requests_per_task"] > 0
        assert row["p95"] >= row["p50"]
        assert row["p50"] > -5  # seen after the emulator's finish time, give or take jitter


def test_makespan(bench: dict[str, ModuleType]) -> None:
    result = bench["makespan"].main(["--tasks", "6", "--slots", "3", "--duration", "0.1"])
    for row in result["rows"]:
        assert row["finished"] == 6
        assert row["creates"] == 6
        assert row["makespan"] >= row["ideal"] * 0.9
        assert row["ratio"] > 0


def test_memory(bench: dict[str, ModuleType]) -> None:
    result = bench["memory"].main(["--tasks", "5000"])
    assert result["tasks"] == 5000
    assert result["rss_end"] >= result["rss_start"]
