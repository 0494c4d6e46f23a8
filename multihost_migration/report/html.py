"""report.html: one self-contained page (inline CSS and SVG, no scripts)
that a person reads to learn what ran, what failed, where and why.

    summary      verdict, counts, hosts, duration, one row per test
    per test     verdict and reason, each host's verdict, links to the
                 failure's status.log lines and to every log file,
                 migration statistics and charts
    status.log   numbered and anchored, so failures link to their line

Links to logs are relative to the results directory, so the directory can be
moved or archived as a whole.
"""

from __future__ import annotations

import logging
import os
import re
import time
from html import escape
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence
from urllib.parse import quote

from multihost_migration.verdicts import PASSING

from multihost_migration.report.migration_html import migrations_html
from multihost_migration.report.model import Results, TestResult, load_results
from multihost_migration.report.statuslog import (STATUS_FILE, StatusLine, anchor,
                                                  failure_lines, read_status_log,
                                                  render_status_log)

log = logging.getLogger(__name__)

HTML_FILE = "report.html"
SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|private|credential", re.I)
#: Job-level files linked from the summary when present.
JOB_FILES = ("status.log", "keyval", "control.srv", "results.json", "junit.xml",
             "debug/autoserv.INFO", "debug/autoserv.DEBUG")

CSS = """
body{font:14px/1.45 sans-serif;margin:0 24px 40px;color:#222;max-width:1280px}
h1{margin:16px 0 4px}h2{border-bottom:2px solid #ccc;padding-bottom:2px;margin-top:28px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f2f2f2}
.verdict{display:inline-block;padding:1px 8px;border-radius:3px;color:#fff;font-weight:bold}
.v-GOOD{background:#2e7d32}.v-WARN{background:#b26a00}.v-FAIL{background:#c62828}
.v-ERROR,.v-ABORT{background:#6a1b9a}.v-TEST_NA,.v-NOSTATUS{background:#757575}
tr.bad td{background:#fdecea}.reason{white-space:pre-wrap;font-family:monospace;
background:#fafafa;border-left:4px solid #c62828;padding:6px 10px;margin:6px 0}
.test{border:1px solid #ddd;border-radius:4px;padding:4px 14px 10px;margin:14px 0}
.muted{color:#777}.charts{display:flex;flex-wrap:wrap;gap:8px}
svg.chart{border:1px solid #eee;background:#fff}
details.migration{margin:6px 0}details.migration>summary{cursor:pointer;font-weight:bold}
ul.logs{columns:2;margin:4px 0}code{font-size:12px}
.statuslog{font:12px monospace;white-space:pre;overflow-x:auto;border:1px solid #ddd}
.sl{padding:0 4px}.sl:target{background:#fff59d}.sl .ln{display:inline-block;width:3em;
color:#999;text-decoration:none}.st-FAIL,.st-ERROR,.st-ABORT{background:#fdecea}
.st-WARN{background:#fff4e5}.st-GOOD{color:#2e7d32}
"""


def _verdict(status: str) -> str:
    return f'<span class="verdict v-{escape(status)}">{escape(status)}</span>'


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _when(epoch: Optional[float]) -> str:
    return "–" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _href(path: Path, base: Path) -> str:
    return quote(Path(os.path.relpath(path, base)).as_posix())


def test_id(index: int) -> str:
    return f"test-{index}"


def log_files(test: TestResult) -> dict[str, list[Path]]:
    """Every file under the test's log directory, grouped by host subdir."""
    if test.logdir is None:
        return {}
    groups: dict[str, list[Path]] = {}
    for path in sorted(p for p in test.logdir.rglob("*") if p.is_file()):
        parts = path.relative_to(test.logdir).parts
        owner = parts[0] if len(parts) > 1 else "test"
        groups.setdefault(owner, []).append(path)
    return groups


def _logs_html(test: TestResult, base: Path) -> str:
    groups = log_files(test)
    if not groups:
        return f'<p class="muted">log directory not found ({escape(str(test.logdir))})</p>'
    out = []
    for owner, paths in groups.items():
        items = "".join(f'<li><a class="log" href="{_href(p, base)}">'
                        f"{escape(p.relative_to(test.logdir or base).as_posix())}</a></li>"
                        for p in paths)
        out.append(f"<h4>{escape(owner)}</h4><ul class=\"logs\">{items}</ul>")
    return "".join(out)


def _hosts_html(test: TestResult) -> str:
    if not test.host_results:
        return '<p class="muted">no per-host results</p>'
    rows = "".join(
        f'<tr class="{"" if h.status in PASSING else "bad"}">'
        f"<td>{escape(h.host)}</td><td>{_verdict(h.status)}</td>"
        f'<td class="host-reason">{escape(h.reason)}</td></tr>' for h in test.host_results)
    return f"<table><tr><th>host</th><th>verdict</th><th>reason</th></tr>{rows}</table>"


def _params_html(params: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td><code>"
        f"{'******' if SECRET_KEY.search(k) else escape(str(v))}</code></td></tr>"
        for k, v in sorted(params.items()) if not k.startswith("_"))
    return (f"<details><summary>parameters ({len(params)})</summary>"
            f"<table>{rows}</table></details>")


def _status_links(lines: Sequence[StatusLine], test: TestResult) -> str:
    bad = failure_lines(lines, test)
    if not bad:
        return ""
    links = ", ".join(f'<a class="status-link" href="#{anchor(line)}">status.log line '
                      f"{line.number}</a> ({escape(line.entry.subdir)})" for line in bad)
    return f"<p>Failure recorded at: {links}</p>"


def test_html(index: int, test: TestResult, lines: Sequence[StatusLine], base: Path) -> str:
    failed = ", ".join(h.host for h in test.failed_hosts)
    parts = [f'<section class="test" id="{test_id(index)}">',
             f"<h3>{_verdict(test.status)} {escape(test.name)}</h3>",
             f'<p>group <b>{escape(test.group)}</b>, hosts <b>{escape(", ".join(test.hosts))}'
             f"</b>, duration {_duration(test.duration)}"
             + (f', failed on <b class="failed-hosts">{escape(failed)}</b>' if failed else "")
             + "</p>"]
    if test.reason and not test.passed:
        parts.append(f'<div class="reason">{escape(test.reason)}</div>')
    parts += [_status_links(lines, test), _hosts_html(test), "<h4>Migrations</h4>",
              migrations_html(test.migrations), "<h4>Logs</h4>", _logs_html(test, base),
              _params_html(test.params), "</section>"]
    return "".join(parts)


def summary_html(results: Results) -> str:
    job, base = results.job, results.results_dir
    counts = ", ".join(f"{n} {s}" for s, n in sorted(results.counts().items()))
    files = " · ".join(f'<a href="{quote(f)}">{escape(f)}</a>' for f in JOB_FILES
                       if (base / f).exists())
    rows = []
    for i, t in enumerate(results.tests):
        worst = t.worst_downtime_ms
        rows.append(
            f'<tr class="{"" if t.passed else "bad"}"><td><a href="#{test_id(i)}">'
            f"{escape(t.name)}</a></td><td>{escape(t.group)}</td>"
            f"<td>{escape(', '.join(t.hosts))}</td><td>{_verdict(t.status)}</td>"
            f"<td>{_duration(t.duration)}</td><td>{len(t.migrations)}</td>"
            f"<td>{'–' if worst is None else f'{worst:,.0f} ms'}</td>"
            f"<td>{escape(t.reason[:160] if not t.passed else '')}</td></tr>")
    table = ("<table class=\"summary\"><tr><th>test</th><th>group</th><th>hosts</th>"
             "<th>verdict</th><th>duration</th><th>migrations</th><th>worst downtime</th>"
             "<th>reason</th></tr>" + "".join(rows) + "</table>")
    return (f'<h1>Migration test report {_verdict(results.verdict)}</h1>'
            f'<p id="counts">{len(results.tests)} test{"" if len(results.tests) == 1 else "s"}: {escape(counts) or "none"}</p>'
            f"<p>hosts <b>{escape(', '.join(job.machines))}</b> · started {_when(job.started)}"
            f" · finished {_when(job.finished)} · duration {_duration(job.duration)}<br>"
            f"control <code>{escape(job.control)}</code> args "
            f"<code>{escape(' '.join(job.args))}</code><br>{files}</p>" + table)


def render_html(results: Results) -> str:
    lines = read_status_log(results.results_dir / STATUS_FILE)
    tests = "".join(test_html(i, t, lines, results.results_dir)
                    for i, t in enumerate(results.tests))
    title = f"{results.verdict}: {len(results.tests)} migration tests"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            + summary_html(results) + "<h2>Tests</h2>" + (tests or '<p class="muted">no tests ran</p>')
            + '<h2 id="status-log">status.log</h2>' + render_status_log(lines)
            + "</body></html>\n")


def write_html(results_dir: Path) -> Path:
    """Write RESULTS_DIR/report.html; returns its path."""
    results = load_results(Path(results_dir))
    path = results.results_dir / HTML_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_html(results), encoding="utf-8")
    tmp.replace(path)
    log.info("wrote %s (%d tests)", path, len(results.tests))
    return path
