"""Run the five benchmarks in turn (``make bench``); each prints its own table.

Run: ``.venv/bin/python benchmarks/run_all.py``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_makespan
import bench_memory
import bench_requests_per_task
import bench_throughput
import bench_webhooks


def main() -> int:
    """Run every benchmark with its default sizes; return the process exit status."""
    for module in (
        bench_throughput,
        bench_requests_per_task,
        bench_makespan,
        bench_memory,
        bench_webhooks,
    ):
        started = time.perf_counter()
        print(f"\n##### {module.__name__}", flush=True)
        module.main([])
        print(f"({time.perf_counter() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
