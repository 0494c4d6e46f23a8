"""Tests of multihost_migration.report.html and migration_html (the page's
content; tests/functional/test_report_html.py renders it in Chromium)."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from multihost_migration.report.html import log_files, write_html
from multihost_migration.report.migration_html import migrations_html
from multihost_migration.report.model import load_results
from tests.unit.test_report_model import (FAIL_REASON, GROUP, H2_REASON, make_results,
                                          minimal_test, passing_test, pingpong_test,
                                          standard_results)


class Links(HTMLParser):
    """Collects hrefs, ids and external resource references."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("href"):
            self.hrefs.append(a["href"] or "")
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag in ("script", "img", "link", "iframe") or a.get("src"):
            self.external.append(tag)


def render(tmp_path: Path) -> tuple[Path, str, Links]:
    root = standard_results(tmp_path / "r")
    path = write_html(root)
    text = path.read_text()
    links = Links()
    links.feed(text)
    return root, text, links


def section(text: str, index: int) -> str:
    start = text.index(f'id="test-{index}"')
    end = text.find('<section class="test"', start)
    return text[start:end if end > 0 else len(text)]


def test_self_contained_and_every_link_resolves(tmp_path: Path) -> None:
    root, text, links = render(tmp_path)
    assert links.external == [] and "http://" not in text.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    for href in links.hrefs:
        if href.startswith("#"):
            assert href[1:] in links.ids, href
        else:
            assert not href.startswith("/") and (root / unquote(href)).is_file(), href


def test_summary(tmp_path: Path) -> None:
    _, text, _ = render(tmp_path)
    head = text[:text.index("<h2>Tests</h2>")]
    assert 'class="verdict v-ERROR">ERROR' in head
    assert "4 tests: 1 ERROR, 1 FAIL, 2 GOOD" in head
    assert "<b>h1, h2</b>" in head and "duration 1m16s" in head
    assert ">80 ms<" in head                       # worst downtime of the ping-pong
    assert 'href="status.log"' in head and 'href="junit.xml"' not in head


def test_failing_test_shows_hosts_reasons_and_status_lines(tmp_path: Path) -> None:
    root, text, _ = render(tmp_path)
    fail = section(text, 1)
    assert '<b class="failed-hosts">h1, h2</b>' in fail
    assert html.escape(FAIL_REASON) in fail and html.escape(H2_REASON) in fail
    status_lines = (root / "status.log").read_text().splitlines()
    numbers = [int(n) for n in re.findall(r'href="#status-L(\d+)"', fail)]
    assert len(numbers) == 3
    assert all("\tFAIL\t" in status_lines[n - 1] for n in numbers)
    assert "no statistics recorded" in fail


def test_every_log_file_of_a_test_is_linked(tmp_path: Path) -> None:
    root, text, _ = render(tmp_path)
    fail = section(text, 1)
    test = load_results(root).tests[1]
    files = [p for group in log_files(test).values() for p in group]
    assert len(files) == 1 + 2 * 8
    for path in files:
        assert f'href="{path.relative_to(root).as_posix()}"' in fail


def test_passing_migration_charts(tmp_path: Path) -> None:
    _, text, _ = render(tmp_path)
    good = section(text, 0)
    for chart in ("ram-transferred", "throughput", "downtime", "guest-downtime"):
        assert f'data-chart="{chart}"' in good, chart
    assert "limit 300 ms" in good and "940.5 Mbit/s" in good
    assert "hunter2" not in text                  # secrets are not shown
    assert 'class="reason"' not in good


def test_pingpong_has_round_charts_and_folds_details(tmp_path: Path) -> None:
    _, text, _ = render(tmp_path)
    pp = section(text, 2)
    assert 'data-chart="rounds-total-time"' in pp and 'data-chart="rounds-downtime"' in pp
    assert len(re.findall(r'<details class="migration"', pp)) == 20
    assert len(re.findall(r'<details class="migration"[^>]* open>', pp)) == 0
    # without samples: a transferred/total bar instead of a line chart
    assert pp.count('data-chart="ram-transferred"') == 20
    assert "RAM transferred (no samples)" in pp


def test_failed_migration_in_pingpong_is_unfolded() -> None:
    from multihost_migration.report.model import Migration
    test = pingpong_test(5)
    test["migrations"][3]["stats"]["vm1"].update(status="failed", error_desc="boom")
    migs = tuple(Migration.from_json(m) for m in test["migrations"])
    out = migrations_html(migs)
    assert re.findall(r'id="mig-(\w+)" open', out) == ["mig4"]
    assert "boom" in out


def test_minimal_test_renders(tmp_path: Path) -> None:
    _, text, _ = render(tmp_path)
    minimal = section(text, 3)
    assert "log directory not found" in minimal and "no per-host results" in minimal
    assert "no RAM statistics recorded" in minimal


def test_no_tests_and_escaping(tmp_path: Path) -> None:
    assert "no tests ran" in write_html(make_results(tmp_path / "a", [])).read_text()
    t = passing_test("<script>alert(1)</script>")
    t["status"] = "FAIL"
    t["reason"] = "<img src=x>"
    text = write_html(make_results(tmp_path / "b", [t, minimal_test()])).read_text()
    assert "<script>" not in text and "<img" not in text
    assert "&lt;img src=x&gt;" in text
    assert GROUP in text
