"""report.html rendered by a real browser (headless Chromium, offline).

Chromium comes from scripts/setup.sh (Debian `chromium`); a missing browser
fails the test instead of skipping it.  The screenshot is kept in the test's
tmp dir (and copied to $MHM_REPORT_SCREENSHOT when set) for a human to look at.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from multihost_migration.report.html import write_html
from tests.unit.test_report_model import FAIL_REASON, H2_REASON, standard_results

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
WIDTH, HEIGHT = 1280, 2000


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run scripts/setup.sh"
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_html(standard_results(tmp_path_factory.mktemp("report") / "results"))


@pytest.fixture(scope="module")
def dom(report: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return chromium(tmp_path_factory.mktemp("chromium"), "--dump-dom",
                    report.as_uri()).stdout


def test_dom_has_failure_hosts_logs_and_charts(report: Path, dom: str) -> None:
    assert "<h1>Migration test report" in dom
    assert html.escape(FAIL_REASON, quote=False) in dom
    assert html.escape(H2_REASON, quote=False) in dom
    assert '<b class="failed-hosts">h1, h2</b>' in dom
    logs = re.findall(r'<a class="log" href="([^"]+)"', dom)
    assert len(logs) >= 3 * 17
    assert all((report.parent / link).is_file() for link in logs)
    status_links = re.findall(r'class="status-link" href="#(status-L\d+)"', dom)
    # 3 for the failing test (h1, h2, the test), 1 for the minimal test's ERROR
    assert len(status_links) == 4 and all(f'id="{a}"' in dom for a in status_links)
    charts = re.findall(r'<svg[^>]* data-chart="([\w-]+)"', dom)
    for kind in ("ram-transferred", "throughput", "downtime", "rounds-total-time",
                 "rounds-downtime"):
        assert kind in charts, kind
    assert "<polyline" in dom and 'class="bar"' in dom


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshot(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}",
             report.as_uri())
    assert png_size(shot) == (WIDTH, HEIGHT)
    # A blank white page of this size compresses to ~10 kB; text, tables and
    # charts make it several times larger.
    assert shot.stat().st_size > 60_000
    target = os.environ.get("MHM_REPORT_SCREENSHOT")
    if target:
        shutil.copy(shot, target)
