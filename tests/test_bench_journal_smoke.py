"""Run the journal benchmark's ``main`` with tiny sizes so the script cannot rot.

It checks that the figures make sense (every item written, every file there), never how fast.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_bench_journal() -> None:
    """Both parts run end to end and report finite, positive figures."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_journal
    finally:
        sys.path.remove(str(BENCHMARKS))
    result = bench_journal.main(
        [
            "--items", "40", "--workers", "2", "--tasks", "6", "--slots", "4",
            "--duration", "0.2", "--interval", "0.05", "--makespan-workers", "2",
            "--start-delay", "0.5",
        ]
    )  # fmt: skip
    sqlite, postgres = result["rows"]
    assert sqlite["items"] == postgres["items"] == 40
    assert postgres["claims"] >= 40 / bench_journal.CHUNK
    assert all(row["items_per_s"] > 0 for row in result["rows"])
    (span,) = result["makespan"]
    assert span["files"] == 6
    assert math.isfinite(span["ratio"])
    assert span["makespan"] >= span["ideal"] * 0.9
