"""The run's latency distributions as one plain SVG: a panel per group, the share of samples at or under each latency.

Series are named "group: what" (e.g. "creation: notify.send, 1 client"); each group is a panel of its own,
latency on a logarithmic axis in ms, so a peer ten times faster sits one decade to the left.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

from bench.common import ms

WIDTH = 760
PANEL = 260  # height of one panel's plot area
LEFT, RIGHT, TOP, GAP = 60, 20, 30, 90
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
EDGE = -2  # the leftmost decade at most: 0.01 ms
POINTS = 400  # at most this many steps per series: the file stays small at any sample count


def cumulative(seconds: list[float]) -> list[tuple[float, float]]:
    """(latency in ms, share of samples at or under it) at up to POINTS ranks of the sorted samples."""
    ordered = sorted(seconds)
    n = len(ordered)
    ranks = sorted({min(n - 1, int(i * n / POINTS)) for i in range(POINTS)} | {n - 1})
    return [(ordered[r] * 1000, (r + 1) / n) for r in ranks]


def svg(distributions: dict[str, list[float]]) -> str:
    groups: dict[str, dict[str, list[float]]] = {}
    for name, values in distributions.items():
        if values:
            group, _, label = name.partition(": ")
            groups.setdefault(group, {})[label or group] = values
    height = TOP + len(groups) * (PANEL + GAP)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
    ]
    for index, (group, series) in enumerate(groups.items()):
        out.extend(panel(group, series, TOP + index * (PANEL + GAP)))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def panel(title: str, series: dict[str, list[float]], top: int) -> list[str]:
    curves = {name: cumulative(values) for name, values in series.items()}
    every = [latency for curve in curves.values() for latency, _ in curve if latency > 0]
    # A receipt can come before its sender sees the commit acknowledged (zero or negative latency): such samples,
    # and any under 10 µs, sit on the left edge rather than stretch the axis over empty decades.
    low = max(EDGE, math.floor(math.log10(min(every)))) if every else EDGE
    high = math.ceil(math.log10(max(every))) if every else 2
    high = max(high, low + 1)
    plot_width = WIDTH - LEFT - RIGHT

    def x(latency: float) -> float:
        return LEFT + (math.log10(max(latency, 10.0**low)) - low) / (high - low) * plot_width

    def y(share: float) -> float:
        return top + PANEL - share * PANEL

    out = [f'<text x="{LEFT}" y="{top - 10}" font-weight="bold">{escape(title)} latency, ms (log scale; less than '
           f"{10.0**low:g} ms on the left edge): share of samples at or under it</text>"]  # fmt: skip
    for decade in range(low, high + 1):
        px = x(10.0**decade)
        out.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{top + PANEL}" stroke="#ddd"/>')
        out.append(f'<text x="{px:.1f}" y="{top + PANEL + 15}" text-anchor="middle">{10.0**decade:g}</text>')
    for share in (0, 0.5, 0.9, 1):
        py = y(share)
        out.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{WIDTH - RIGHT}" y2="{py:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 5}" y="{py + 4:.1f}" text-anchor="end">p{share * 100:g}</text>')
    for i, (name, curve) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        steps, level = [], y(0)
        for latency, share in curve:
            steps.append(f"{x(latency):.1f},{level:.1f}")
            level = y(share)
            steps.append(f"{x(latency):.1f},{level:.1f}")
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(steps)}"/>')
        samples, p50 = len(series[name]), ms(series[name], 50) or 0.0
        legend_y = top + PANEL + 32 + 14 * i
        out.append(f'<line x1="{LEFT}" y1="{legend_y - 4}" x2="{LEFT + 20}" y2="{legend_y - 4}" stroke="{colour}" '
                   'stroke-width="3"/>')  # fmt: skip
        out.append(f'<text x="{LEFT + 26}" y="{legend_y}">{escape(name)} ({samples:,} samples, p50 ≈ {p50:.2f} ms)'
                   "</text>")  # fmt: skip
    return out


def write(distributions: dict[str, list[float]], path: Path) -> Path | None:
    """Writes the chart to path (its folder made); None when the run measured no latencies."""
    if not any(distributions.values()):
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg(distributions))
    return path
