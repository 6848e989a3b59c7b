"""A dependency-free SVG scatter plot: p95 detection latency against requests per task.

``run_all.py`` writes ``benchmarks/detection_vs_requests.svg`` from the figures of
``bench_default_policy.py`` (CometAPI mode) and ``bench_requests_per_task.py`` (with and without
a list endpoint). Plain SVG, so the benchmarks need nothing beyond the ``dev`` extra.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import NamedTuple

WIDTH, HEIGHT = 760, 460
LEFT, RIGHT, TOP, BOTTOM = 70, 230, 40, 60
COLOURS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#17becf",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#000000",
    "#aec7e8",
)


class Point(NamedTuple):
    """One strategy's figures."""

    label: str
    requests_per_task: float
    p95: float


def _x(value: float, low: float, high: float) -> float:
    # Requests per task span 0.2 to 20: a log axis keeps list mode and per-task GETs readable.
    span = math.log10(high) - math.log10(low)
    return LEFT + (math.log10(value) - math.log10(low)) / span * (WIDTH - LEFT - RIGHT)


def _y(value: float, high: float) -> float:
    return HEIGHT - BOTTOM - value / high * (HEIGHT - TOP - BOTTOM)


def write_svg(path: Path, title: str, points: Sequence[Point]) -> Path:
    """Write the scatter plot of *points* to *path*; return *path*."""
    usable = [p for p in points if p.requests_per_task > 0 and math.isfinite(p.p95)]
    low = 10 ** math.floor(math.log10(min(p.requests_per_task for p in usable)))
    high = 10 ** math.ceil(math.log10(max(p.requests_per_task for p in usable)))
    top = max(10.0, math.ceil(max(p.p95 for p in usable) / 5) * 5)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]
    x0, x1 = LEFT, WIDTH - RIGHT
    y0, y1 = HEIGHT - BOTTOM, TOP
    parts.append(f'<path d="M{x0},{y1} V{y0} H{x1}" stroke="black" fill="none"/>')
    decade = low
    while decade <= high * 1.0001:
        x = _x(decade, low, high)
        parts.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="#ddd"/>')
        parts.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{decade:g}</text>')
        decade *= 10
    for tick in range(0, int(top) + 1, 5):
        y = _y(tick, top)
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    parts.append(
        f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 18}" text-anchor="middle">'
        "status requests per task (log scale)</text>"
    )
    parts.append(
        f'<text x="18" y="{(y0 + y1) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {(y0 + y1) / 2})">p95 detection latency, s</text>'
    )
    for index, point in enumerate(usable):
        colour = COLOURS[index % len(COLOURS)]
        x, y = _x(point.requests_per_task, low, high), _y(point.p95, top)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>')
        legend_y = TOP + 10 + index * 18
        parts.append(f'<circle cx="{x1 + 16}" cy="{legend_y}" r="5" fill="{colour}"/>')
        parts.append(f'<text x="{x1 + 26}" y="{legend_y + 4}">{escape(point.label)}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
