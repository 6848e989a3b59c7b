"""benchmarks/bench_fleet.py with tiny sizes, so the script cannot rot (no speed is checked)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .redis_support import requires_redis

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = [pytest.mark.timeout(180), requires_redis]


def test_fleet_benchmark_runs_and_counts() -> None:
    """One process, with and without the store: every task done, the figures present."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_fleet
    finally:
        sys.path.remove(str(BENCHMARKS))
    figures = bench_fleet.main(
        [
            "--processes",
            "1",
            "--tasks",
            "3",
            "--duration",
            "0.2",
            "--window",
            "0.5",
            "--acquires",
            "20",
        ]
    )
    runs = figures["runs"]
    assert [(run["processes"], run["shared"]) for run in runs] == [(1, False), (1, True)]
    for run in runs:
        assert run["tasks"]["done"] == 3
        assert run["tasks"]["ratio"] > 0.9  # never faster than the tasks themselves
        assert run["rate"]["rate"] > 0
    assert figures["acquire"]["shared (Redis) p50 (us)"] > 0
    assert set(figures["targets"]) >= {"never above R + burst in 1 s (shared)"}
