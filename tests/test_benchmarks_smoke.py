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
        import bench_default_policy
        import bench_makespan
        import bench_memory
        import bench_otel
        import bench_readme_pattern
        import bench_requests_per_task
        import bench_throughput
        import bench_tight_budget
        import bench_versions
        import run_all
        from _plot import write_svg
    finally:
        sys.path.remove(str(BENCHMARKS))
    return {
        "default_policy": bench_default_policy,
        "throughput": bench_throughput,
        "requests": bench_requests_per_task,
        "makespan": bench_makespan,
        "memory": bench_memory,
        "otel": bench_otel,
        "run_all": run_all,
        "readme": bench_readme_pattern,
        "tight_budget": bench_tight_budget,
        "versions": bench_versions,
        "plot": sys.modules[write_svg.__module__],
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
    for variant in (result, result["changing_variant"]):
        assert variant["baseline_checks_per_s"] > 0
        assert variant["library_checks_per_s"] > 0
        assert math.isfinite(variant["ratio"])
        assert variant["ratio"] > 0
    assert not result["changing"]
    assert result["changing_variant"]["changing"]
    # The calibration runs once, with the first variant: a raw loop slowed by a busy wait.
    assert set(result["calibration"]) == set(bench["throughput"].BURNS_US)
    assert all(0 < ratio < 2 for ratio in result["calibration"].values())
    assert result["changing_variant"]["calibration"] == {}


def test_versions_against_this_very_tree(bench: dict[str, ModuleType]) -> None:
    """The version A/B runs end to end (this tree on both sides: the ratio is noise around 1)."""
    tree = BENCHMARKS.parent
    result = bench["versions"].main(
        ["--old", str(tree), "--tasks", "4", "--rounds", "1", "--pairs", "2", "--window", "0.3"]
    )
    assert len(result["rounds"]) == 1
    rates = result["rounds"][0]["rates"]
    assert rates["old"] > 0
    assert rates["new"] > 0
    assert result["min"] == result["median"] == result["max"] == result["ratios"][0] > 0


def test_versions_refuses_a_tree_without_the_package(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit):
        bench["versions"].main(["--old", str(tmp_path)])


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
    told = [row for row in result["rows"] if row["told"]]
    learnt = [row for row in result["rows"] if not row["told"]]
    assert len(told) == 2
    assert len(learnt) == 1
    for row in result["rows"]:
        assert row["finished"] == 6
        assert row["makespan"] >= row["ideal"] * 0.9
        assert row["ratio"] > 0
    for row in told:
        assert row["creates"] == 6
        assert row["rejected_1303"] == 0
    # Not told the limit, the client meets 1303s until it has learnt it; each is a create
    # that made nothing, sent again.
    assert learnt[0]["rejected_1303"] >= 1
    assert learnt[0]["creates"] == 6 + learnt[0]["rejected_1303"]


def test_memory(bench: dict[str, ModuleType]) -> None:
    result = bench["memory"].main(["--tasks", "5000"])
    assert result["tasks"] == 5000
    assert result["rss_end"] >= result["rss_start"]


def test_otel_overhead(bench: dict[str, ModuleType]) -> None:
    result = bench["otel"].main(
        [
            "--tasks",
            "6",
            "--concurrency",
            "2",
            "--window",
            "0.2",
            "--warmup",
            "0.05",
            "--rounds",
            "1",
        ]
    )
    assert set(result["checks_per_s"]) == set(bench["otel"].MODES)
    assert all(rate > 0 for rate in result["checks_per_s"].values())
    assert all(math.isfinite(ratio) and ratio > 0 for ratio in result["ratio"].values())


def test_default_policy(bench: dict[str, ModuleType], tmp_path: Path) -> None:
    result = bench["default_policy"].main(
        ["--tasks", "8", "--warmup", "8", "--scale", "0.002", "--rounds", "2"]
    )
    names = {row["name"] for row in result["rows"]}
    assert names == {"naive wide", "wide", "wide + progress", "naive mix", "mix cold", "mix warm"}
    for row in result["rows"]:
        assert row["requests_per_task"] >= 1  # every task needs at least one GET to be seen
        assert 0 < row["ratio_min"] <= row["ratio_median"] <= row["ratio_max"]
        assert row["p95_min"] <= row["p95_median"] <= row["p95_max"]
        assert row["p95_min"] > -5  # seen after the emulator's finish time, give or take
    requests = bench["requests"].main(["--tasks", "4", "--scale", "0.002"])
    points = bench["run_all"].plot_points(requests, result)
    assert len(points) == len(requests["rows"]) + len(result["rows"])
    svg = bench["plot"].write_svg(tmp_path / "plot.svg", "smoke", points).read_text()
    assert svg.startswith("<svg")
    assert svg.count("<circle") == 2 * len(points)  # one dot and one legend mark each


def test_tight_budget(bench: dict[str, ModuleType]) -> None:
    result = bench["tight_budget"].main(["--tasks", "20", "--rate", "2"])
    assert [row["name"] for row in result["rows"]] == ["naive", "default"] * 2
    for row in result["rows"]:
        assert row["requests_per_task"] >= 1
        assert 0 <= row["p50"] <= row["p95"] <= row["max"]
        assert row["makespan"] >= 60  # nothing finishes sooner


def test_list_schedule(bench: dict[str, ModuleType]) -> None:
    schedule = bench["readme"].list_schedule
    assert schedule([1.0, 1.0, 2.0], 2) == 3.0
    assert schedule([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    assert schedule([2.0] * 4, 4) == 2.0


def test_readme_pattern(bench: dict[str, ModuleType]) -> None:
    result = bench["readme"].main(["--tasks", "6", "--slots", "3", "--scale", "0.002"])
    assert result["finished"] == 6
    assert result["ratio"] > 0.9  # cannot beat the ideal by much (durations vary +-25 %)
    # Nothing beats the list schedule of the very durations drawn, seen finishing at once.
    assert result["drawn_ratio"] >= 1.0
    assert result["drawn_ideal_s"] >= result["mean_task_s"] * 2  # 6 tasks on 3 slots
    assert result["requests_per_task"] >= 1
    assert result["scheduler_per_task"] + result["submitters_per_task"] == pytest.approx(
        result["requests_per_task"]
    )
    # Tasks of equal length: ceil(N/S) x D is then the exact ideal, which nothing beats.
    constant = result["constant"]
    assert constant["spread"] == 0.0
    assert constant["finished"] == 6
    assert constant["ratio"] >= 1.0
    assert constant["drawn_ratio"] == pytest.approx(constant["ratio"], rel=0.02)
    # The one-call form: every status request is the scheduler's (no submitter polls).
    for one_call in (result["as_completed"], result["as_completed_constant"]):
        assert one_call["form"] == "as_completed"
        assert one_call["finished"] == 6
        assert one_call["submitters_per_task"] == 0
        assert one_call["scheduler_per_task"] >= 1
        assert one_call["rejected_1303"] == 0
