"""Tests of multihost_migration.report.progress."""

from __future__ import annotations

import io
import re
import threading
import time
from typing import Any

from multihost_migration.report.progress import Progress, summary_table
from tests.unit.test_report_model import failing_test, minimal_test, passing_test, pingpong_test

ESC = re.compile(r"\x1b\[\d*[A-Za-z]")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def screen(text: str) -> list[str]:
    """What a terminal shows after `text`: handles 'n lines up' + 'erase below'."""
    rows: list[str] = []
    for token in re.split(r"(\x1b\[\d*[FJ])", text):
        if m := re.fullmatch(r"\x1b\[(\d*)F", token):
            rows = rows[:len(rows) - int(m.group(1) or 1)]
        elif token and not token.startswith("\x1b"):
            rows += token.splitlines()
    return rows


def test_plain_lines_for_phases_and_10_percent_steps() -> None:
    out = io.StringIO()
    p = Progress(out, is_tty=False, width=80)
    p.phase("g1", "h1", "booting vm1")
    for pct in range(0, 101):
        p.migration("g1", "h1", "vm1", float(pct), 900.0)
    p.migration("g1", "h1", "vm1", 3.0, None)          # next ping-pong round
    lines = out.getvalue().splitlines()
    assert lines[0] == "[g1] h1: booting vm1"
    assert len(lines) == 1 + 11 + 1
    assert lines[5] == "[g1] h1: migrating vm1 [####------]  40.0% 900 Mbit/s"
    assert lines[-1].endswith("[----------]   3.0%")
    assert not ESC.search(out.getvalue())


def test_tty_block_redraws_in_place_and_is_throttled() -> None:
    out, clock = io.StringIO(), FakeClock()
    p = Progress(out, is_tty=True, width=60, min_interval=0.1, clock=clock)
    p.phase("g", "h1", "migrating")
    p.phase("g", "h2", "waiting")
    assert screen(out.getvalue()) == ["[g] h1: migrating", "[g] h2: waiting"]
    before = out.getvalue()
    p.migration("g", "h1", "vm1", 10.0, 1000.0)        # within 0.1 s: not drawn
    assert out.getvalue() == before
    clock.now = 0.2
    p.migration("g", "h1", "vm1", 55.0, 1000.0)
    rows = screen(out.getvalue())
    assert rows[0].startswith("[g] h1: migrating  vm1 [#####-----]  55.0%")
    assert rows[1] == "[g] h2: waiting" and len(rows) == 2
    p.message("h2: sync point mig1 reached")
    assert screen(out.getvalue()) == ["h2: sync point mig1 reached", rows[0], rows[1]]
    assert all(len(r) <= 59 for r in screen(out.getvalue()))


def test_summary_erases_block_and_prints_table() -> None:
    out = io.StringIO()
    p = Progress(out, is_tty=True, width=100)
    p.phase("g", "h1", "x")
    p.summary([passing_test(), failing_test()])
    rows = screen(out.getvalue())
    assert rows[0].split() == ["test", "hosts", "verdict", "duration", "migrations",
                               "worst", "downtime"]
    assert rows[2].split() == ["migrate.tcp.passing", "h1,h2", "GOOD", "31.5", "s", "1",
                               "35", "ms"]
    assert rows[-1] == "2 tests: 1 FAIL, 1 GOOD"


def test_summary_table_tolerates_missing_fields() -> None:
    tests: list[dict[str, Any]] = [minimal_test(), pingpong_test(), {}]
    lines = summary_table(tests).splitlines()
    assert lines[2].split() == ["migrate.minimal", "ERROR", "-", "1", "-"]
    assert lines[3].split()[-2:] == ["80", "ms"]
    assert lines[4].split() == ["?", "NOSTATUS", "-", "0", "-"]


class SlowStream(io.StringIO):
    """Writes a character at a time and yields the GIL at each space, so
    unsynchronised writers would interleave inside lines."""

    def write(self, s: str) -> int:
        for ch in s:
            super().write(ch)
            if ch == " ":
                time.sleep(0)
        return len(s)


def test_parallel_hosts_never_garble_lines() -> None:
    out = SlowStream()
    p = Progress(out, is_tty=False, width=200)

    def host(name: str) -> None:
        for round_ in range(30):
            p.phase(f"group-{name}", name, f"round {round_}")
            for pct in range(0, 101, 5):
                p.migration(f"group-{name}", name, "vm1", float(pct), 1.0)
    threads = [threading.Thread(target=host, args=(f"h{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pattern = re.compile(r"\[group-(h\d)\] \1: (round \d+|migrating vm1 \[[#-]{10}\] +"
                         r"\d+\.\d% 1 Mbit/s)")
    lines = out.getvalue().splitlines()
    assert len(lines) == 8 * 30 * (1 + 11)
    assert all(pattern.fullmatch(line) for line in lines)
