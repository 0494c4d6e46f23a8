"""status.log lines with their numbers and nesting, for links from the report.

Each line knows the subdirs of the groups it sits in, so the lines of one
test in one host group (the same test name may run in several groups) can
be found, and the failure lines linked as `#status-L<number>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Sequence

from multihost_migration.report.model import TestResult
from multihost_migration.status import StatusEntry, parse
from multihost_migration.verdicts import NOTABLE, SEVERITY

STATUS_FILE = "status.log"
BAD = NOTABLE


@dataclass(frozen=True)
class StatusLine:
    number: int                     # 1-based line number in status.log
    text: str
    entry: StatusEntry
    groups: tuple[str, ...]         # subdirs of the enclosing START groups

    @property
    def final(self) -> str:
        """The status without an END prefix."""
        return self.entry.status.removeprefix("END ")

    @property
    def is_failure(self) -> bool:
        if self.entry.status.startswith("END "):
            return self.final in BAD and bool(self.entry.reason)
        return self.entry.status in BAD


def read_status_log(path: Path) -> list[StatusLine]:
    """The numbered lines of status.log; [] when the file is absent."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out: list[StatusLine] = []
    stack: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        entries = parse(raw)
        if not entries:
            continue
        entry = entries[0]
        indent = entry.indent
        if entry.status.startswith("END "):
            while stack and stack[-1][0] > indent:
                stack.pop()                     # groups left unclosed
            groups = tuple(s for _, s in stack)
            if stack and stack[-1][0] == indent:
                stack.pop()
        else:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            if entry.status == "START":
                stack.append((indent, entry.subdir))
            groups = tuple(s for _, s in stack)
        out.append(StatusLine(number, raw, entry, groups))
    return out


def lines_of(lines: Sequence[StatusLine], test: TestResult) -> list[StatusLine]:
    """The lines written for `test` (its own and its hosts')."""
    def mine(line: StatusLine) -> bool:
        sub = line.entry.subdir
        in_group = not test.group or test.group in line.groups
        return in_group and (sub == test.name or sub.startswith(test.name + "/"))
    return [line for line in lines if mine(line)]


def failure_lines(lines: Sequence[StatusLine], test: TestResult) -> list[StatusLine]:
    return [line for line in lines_of(lines, test) if line.is_failure]


def verdict_records(text: str) -> list[tuple[str, str]]:
    """(name, status) of every test verdict in a status.log text: the verdict
    lines of tests and of failures before any test (JUnit's testcases); not
    the hosts' own lines (`test/host`), not START/END of groups."""
    return [(e.subdir, e.status) for e in parse(text)
            if e.status in SEVERITY and e.subdir not in ("", "----") and "/" not in e.subdir]


def anchor(line: StatusLine) -> str:
    return f"status-L{line.number}"


def render_status_log(lines: Sequence[StatusLine]) -> str:
    """status.log as a numbered, anchored block (tabs shown as indentation)."""
    rows = []
    for line in lines:
        cls = f"st-{line.final}" if line.final in BAD or line.final == "GOOD" else ""
        body = escape(line.text.replace("\t", "    "))
        rows.append(f'<div class="sl {cls}" id="{anchor(line)}">'
                    f'<a class="ln" href="#{anchor(line)}">{line.number}</a>'
                    f"<span>{body}</span></div>")
    if not rows:
        return '<p class="muted">status.log is missing or empty.</p>'
    return '<div class="statuslog">' + "\n".join(rows) + "</div>"
