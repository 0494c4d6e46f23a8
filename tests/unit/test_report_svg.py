"""Tests of multihost_migration.report.svg."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from multihost_migration.report.svg import (BarSeries, Series, bar_chart, fmt, hbar,
                                            line_chart, nice_ticks)

NS = {"s": "http://www.w3.org/2000/svg"}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)        # well-formed XML, or this raises


@pytest.mark.parametrize("low, high, expected", [
    (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0, 270, [0, 100, 200, 300]),
    (0, 7, [0, 2, 4, 6, 8]),
    (0, 0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (5, 5, [5, 6, 7, 8, 9, 10]),
])
def test_nice_ticks(low: float, high: float, expected: list[float]) -> None:
    assert nice_ticks(low, high) == pytest.approx(expected)


def test_nice_ticks_cover_range() -> None:
    for high in (0.3, 7, 99, 1234.5, 3e9):
        ticks = nice_ticks(0, high)
        assert ticks[0] <= 0 and ticks[-1] >= high and len(ticks) <= 12


def test_fmt() -> None:
    assert [fmt(0), fmt(0.5), fmt(250), fmt(2500)] == ["0", "0.5", "250", "2.5k"]


def test_line_chart_maps_points_inside_plot() -> None:
    svg = parse(line_chart("ram", "t <&>", [Series("a", [(0, 0), (2, 100)]),
                                             Series("b", [(0, 100), (2, 0)])],
                           "x", "y", [(120, "limit")]))
    assert svg.get("data-chart") == "ram"
    assert svg.find("s:title", NS) is not None and svg.find("s:title", NS).text == "t <&>"  # type: ignore[union-attr]
    lines = svg.findall("s:polyline", NS)
    assert len(lines) == 2
    pts = [tuple(map(float, p.split(","))) for p in lines[0].get("points", "").split()]
    (x0, y0), (x1, y1) = pts
    assert x0 < x1 and y0 > y1          # rises to the right (SVG y grows downwards)
    limit = svg.find("s:line[@class='limit']", NS)
    assert limit is not None and float(limit.get("y1", 0)) < y1  # 120 is above 100


def test_line_chart_empty_and_single_point() -> None:
    parse(line_chart("k", "empty", [], "x", "y"))
    svg = parse(line_chart("k", "one", [Series("a", [(1, 1)])], "x", "y"))
    assert svg.find("s:circle", NS) is not None


def test_bar_chart_gaps_for_missing_values_and_limit() -> None:
    svg = bar_chart("rounds", "r", [str(i) for i in range(1, 21)],
                    [BarSeries("vm1", [10.0] * 19 + [None]), BarSeries("vm2", [5.0] * 20)],
                    "ms", [(300, "limit 300 ms")], x_label="migration")
    root = parse(svg)
    assert len(root.findall("s:rect[@class='bar']", NS)) == 39
    assert "limit 300 ms" in svg and ">migration<" in svg
    labels = [t.text for t in root.findall("s:text[@font-size='9']", NS)]
    assert 1 < len(labels) <= 20 and labels[0] == "1"


def test_hbar_turns_red_over_limit() -> None:
    under = parse(hbar("d", "dt", 35, None, "ms", (300, "limit")))
    over = parse(hbar("d", "dt", 350, None, "ms", (300, "limit")))
    fill = [bar.get("fill") for svg in (under, over)
            for bar in svg.findall("s:rect[@class='bar']", NS)]
    assert fill[0] != fill[1] and fill[1] == "#d62728"
    widths = [float(r.get("width", 0)) for r in over.findall("s:rect", NS)]
    assert widths[1] == pytest.approx(widths[0])   # the largest value fills the track


def test_no_script_or_external_reference() -> None:
    svg = line_chart("k", "t", [Series("a", [(0, 1), (1, 2)])], "x", "y")
    assert not re.search(r"<script|href=|url\(", svg)
