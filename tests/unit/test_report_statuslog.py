"""Tests of multihost_migration.report.statuslog."""

from __future__ import annotations

from pathlib import Path

from multihost_migration.report.model import load_results
from multihost_migration.report.statuslog import (failure_lines, lines_of, read_status_log,
                                                  render_status_log)
from multihost_migration.status import format_line
from tests.unit.test_report_model import GROUP, failing_test, make_results, passing_test


def test_failure_lines_of_one_test(tmp_path: Path) -> None:
    root = make_results(tmp_path, [passing_test(), failing_test()])
    res = load_results(root)
    lines = read_status_log(root / "status.log")
    text = (root / "status.log").read_text().splitlines()
    assert [line.text for line in lines] == text
    passing, failing = res.tests
    assert failure_lines(lines, passing) == []
    bad = failure_lines(lines, failing)
    assert [(b.entry.status, b.entry.subdir) for b in bad] == [
        ("FAIL", "migrate.tcp.failing/h1"), ("FAIL", "migrate.tcp.failing/h2"),
        ("FAIL", "migrate.tcp.failing")]
    assert all(text[b.number - 1] == b.text for b in bad)
    assert all(GROUP in b.groups for b in bad)


def test_same_test_name_in_two_groups_is_told_apart(tmp_path: Path) -> None:
    name = "migrate.x"
    path = tmp_path / "status.log"
    path.write_text("".join([
        format_line(0, "START", "g1", "g1"), format_line(1, "START", name, name),
        format_line(2, "GOOD", name, name), format_line(1, "END GOOD", name, name),
        format_line(0, "END GOOD", "g1", "g1"),
        format_line(0, "START", "g2", "g2"), format_line(1, "START", name, name),
        format_line(2, "FAIL", name, name, "boom"), format_line(1, "END FAIL", name, name),
        format_line(0, "END FAIL", "g2", "g2")]))
    test = passing_test(name)
    test["group"] = "g2"
    res = load_results(make_results(tmp_path / "r", [test]))
    lines = read_status_log(path)
    assert [line.number for line in lines_of(lines, res.tests[0])] == [7, 8, 9]
    assert [line.number for line in failure_lines(lines, res.tests[0])] == [8]


def test_end_with_reason_counts_as_failure(tmp_path: Path) -> None:
    path = tmp_path / "status.log"
    path.write_text(format_line(0, "START", "t", "t")
                    + format_line(0, "END ERROR", "t", "t", "RuntimeError: x")
                    + format_line(0, "START", "u", "u") + format_line(0, "END FAIL", "u", "u"))
    lines = read_status_log(path)
    assert [line.is_failure for line in lines] == [False, True, False, False]
    assert lines[1].groups == ("t",)


def test_missing_status_log(tmp_path: Path) -> None:
    assert read_status_log(tmp_path / "status.log") == []
    assert "missing" in render_status_log([])


def test_render_anchors_and_escapes(tmp_path: Path) -> None:
    path = tmp_path / "status.log"
    path.write_text("\n" + format_line(0, "FAIL", "t", "t", "<b>&</b>"))
    html = render_status_log(read_status_log(path))
    assert 'id="status-L2"' in html and 'href="#status-L2"' in html
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in html and "st-FAIL" in html
