"""Small inline SVG charts, generated in Python: no JavaScript, no network.

    line_chart  series of (x, y) points, e.g. RAM transferred over time
    bar_chart   grouped bars per category, e.g. downtime per ping-pong round
    hbar        one value against a maximum and an optional limit marker

Each returns one `<svg>` element string with a `<title>` (tooltips, screen
readers) and `data-chart` naming what it shows, so tests can find it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Optional, Sequence

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
LIMIT_COLOR = "#d62728"
WIDTH, HEIGHT = 520, 230
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 26, 42


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class BarSeries:
    name: str
    values: Sequence[Optional[float]]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(low / step) * step
    ticks = [round(first, 10)]
    while ticks[-1] < high - step * 1e-9 or len(ticks) < 2:
        ticks.append(round(first + step * len(ticks), 10))
    return ticks


def fmt(value: float) -> str:
    """Compact number for axis labels."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _open(kind: str, title: str, height: int = HEIGHT) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{escape(kind)}" '
            f'role="img" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
            f'font-family="sans-serif" font-size="11">',
            f"<title>{escape(title)}</title>",
            f'<text x="{WIDTH / 2}" y="15" text-anchor="middle" font-size="12" '
            f'font-weight="bold">{escape(title)}</text>']


class _Frame:
    """Axes and the mapping from data to pixels."""

    def __init__(self, xticks: list[float], yticks: list[float]) -> None:
        self.x0, self.x1 = xticks[0], xticks[-1]
        self.y0, self.y1 = yticks[0], yticks[-1]
        self.xticks, self.yticks = xticks, yticks
        self.pw = WIDTH - LEFT - RIGHT
        self.ph = HEIGHT - TOP - BOTTOM

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / ((self.x1 - self.x0) or 1) * self.pw

    def py(self, y: float) -> float:
        return TOP + self.ph - (y - self.y0) / ((self.y1 - self.y0) or 1) * self.ph

    def axes(self, x_label: str, y_label: str, xlabels: bool = True) -> list[str]:
        out = []
        for y in self.yticks:
            out.append(f'<line x1="{LEFT}" x2="{LEFT + self.pw}" y1="{self.py(y):.1f}" '
                       f'y2="{self.py(y):.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{LEFT - 4}" y="{self.py(y) + 4:.1f}" '
                       f'text-anchor="end">{fmt(y)}</text>')
        if xlabels:
            for x in self.xticks:
                out.append(f'<text x="{self.px(x):.1f}" y="{TOP + self.ph + 14}" '
                           f'text-anchor="middle">{fmt(x)}</text>')
        out.append(f'<rect x="{LEFT}" y="{TOP}" width="{self.pw}" height="{self.ph}" '
                   f'fill="none" stroke="#888"/>')
        out.append(f'<text x="{LEFT + self.pw / 2}" y="{HEIGHT - 6}" '
                   f'text-anchor="middle">{escape(x_label)}</text>')
        out.append(f'<text transform="translate(13 {TOP + self.ph / 2}) rotate(-90)" '
                   f'text-anchor="middle">{escape(y_label)}</text>')
        return out

    def hline(self, y: float, label: str) -> list[str]:
        py = self.py(y)
        return [f'<line class="limit" x1="{LEFT}" x2="{LEFT + self.pw}" y1="{py:.1f}" '
                f'y2="{py:.1f}" stroke="{LIMIT_COLOR}" stroke-dasharray="5 3"/>',
                f'<text x="{LEFT + self.pw - 3}" y="{py - 3:.1f}" text-anchor="end" '
                f'fill="{LIMIT_COLOR}">{escape(label)}</text>']


def _legend(names: Sequence[str], colors: Sequence[str]) -> list[str]:
    out, x = [], LEFT + 4
    for name, color in zip(names, colors):
        out.append(f'<rect x="{x}" y="{TOP + 4}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="{TOP + 13}">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return out


def line_chart(kind: str, title: str, series: Sequence[Series], x_label: str,
               y_label: str, hlines: Sequence[tuple[float, str]] = ()) -> str:
    """Lines through each series' points, with dashed horizontal limits."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points] + [y for y, _ in hlines]
    frame = _Frame(nice_ticks(min(xs, default=0.0), max(xs, default=1.0)),
                   nice_ticks(min(0.0, *ys) if ys else 0.0, max(ys, default=1.0)))
    out = _open(kind, title) + frame.axes(x_label, y_label)
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(series))]
    for s, color in zip(series, colors):
        pts = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in s.points)
        if len(s.points) == 1:
            x, y = s.points[0]
            out.append(f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="3" '
                       f'fill="{color}"/>')
        out.append(f'<polyline class="series" points="{pts}" fill="none" '
                   f'stroke="{color}" stroke-width="2"/>')
    for y, label in hlines:
        out += frame.hline(y, label)
    if len(series) > 1:
        out += _legend([s.name for s in series], colors)
    return "\n".join(out + ["</svg>"])


def bar_chart(kind: str, title: str, categories: Sequence[str],
              series: Sequence[BarSeries], y_label: str,
              hlines: Sequence[tuple[float, str]] = (), x_label: str = "") -> str:
    """Grouped bars, one group per category; None values leave a gap."""
    values = [v for s in series for v in s.values if v is not None]
    ys = values + [y for y, _ in hlines]
    frame = _Frame([0.0, float(max(len(categories), 1))],
                   nice_ticks(0.0, max(ys, default=1.0)))
    out = _open(kind, title) + frame.axes(x_label, y_label, xlabels=False)
    slot = frame.pw / max(len(categories), 1)
    width = max(slot * 0.8 / max(len(series), 1), 1.0)
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(series))]
    label_px = max((len(c) for c in categories), default=1) * 6 + 4
    every = max(1, math.ceil(label_px / slot))      # skip labels that would overlap
    for i, cat in enumerate(categories):
        if i % every == 0:
            out.append(f'<text x="{LEFT + slot * (i + 0.5):.1f}" y="{TOP + frame.ph + 14}" '
                       f'text-anchor="middle" font-size="9">{escape(cat)}</text>')
        for j, (s, color) in enumerate(zip(series, colors)):
            value = s.values[i] if i < len(s.values) else None
            if value is None:
                continue
            x = LEFT + slot * i + slot * 0.1 + width * j
            top = frame.py(value)
            out.append(f'<rect class="bar" x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" '
                       f'height="{TOP + frame.ph - top:.1f}" fill="{color}">'
                       f"<title>{escape(cat)} {escape(s.name)}: {value:g}</title></rect>")
    for y, label in hlines:
        out += frame.hline(y, label)
    if len(series) > 1:
        out += _legend([s.name for s in series], colors)
    return "\n".join(out + ["</svg>"])


def hbar(kind: str, title: str, value: float, maximum: Optional[float], unit: str,
         marker: Optional[tuple[float, str]] = None) -> str:
    """One horizontal bar: `value` on a scale up to max(maximum, value, marker)."""
    height = 64
    scale = max(value, maximum or 0.0, marker[0] if marker else 0.0) or 1.0
    pw = WIDTH - LEFT - RIGHT
    out = _open(kind, title, height)
    out.append(f'<rect x="{LEFT}" y="24" width="{pw}" height="18" fill="#eee" stroke="#888"/>')
    over = marker is not None and value > marker[0]
    color = LIMIT_COLOR if over else PALETTE[0]
    out.append(f'<rect class="bar" x="{LEFT}" y="24" width="{value / scale * pw:.1f}" '
               f'height="18" fill="{color}"/>')
    label = f"{value:g} {unit}" + (f" of {maximum:g} {unit}" if maximum else "")
    out.append(f'<text x="{LEFT}" y="56">{escape(label)}</text>')
    if marker is not None:
        mx = LEFT + marker[0] / scale * pw
        out.append(f'<line class="limit" x1="{mx:.1f}" x2="{mx:.1f}" y1="20" y2="46" '
                   f'stroke="{LIMIT_COLOR}" stroke-width="2"/>')
        out.append(f'<text x="{LEFT + pw}" y="56" text-anchor="end" '
                   f'fill="{LIMIT_COLOR}">| {escape(marker[1])}</text>')
    return "\n".join(out + ["</svg>"])
