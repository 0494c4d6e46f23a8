"""autotest's status.log: tab-separated, nested by indentation.

    START\t----\t----\ttimestamp=1764107000\tlocaltime=Nov 25 21:43:20\t
    \tSTART\ttest.x\ttest.x\ttimestamp=...\tlocaltime=...\t
    \t\tGOOD\ttest.x\ttest.x\ttimestamp=...\tlocaltime=...\tcompleted successfully
    \tEND GOOD\ttest.x\ttest.x\ttimestamp=...\tlocaltime=...\t
    END GOOD\t----\t----\ttimestamp=...\tlocaltime=...\t

A group's END status is the worst status recorded inside it.  Lines are
written (and flushed) as they happen so `tail -f` shows progress; a group
opened with `buffered=True` is written in one piece when it ends, so groups
run by parallel threads never interleave.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, TextIO

# The vocabulary (worst first: END takes the most severe status inside the
# group) lives in verdicts.py; re-exported here for the writers and readers.
from multihost_migration.verdicts import SEVERITY, STATUSES, worst

__all__ = ["SEVERITY", "STATUSES", "worst", "format_line", "parse", "close_open_groups",
           "StatusEntry", "StatusLog"]


def format_line(indent: int, status: str, subdir: Optional[str], operation: Optional[str],
                reason: str = "", when: Optional[float] = None,
                fields: Optional[dict[str, str]] = None) -> str:
    now = time.time() if when is None else when
    parts = ["\t" * indent + status, subdir or "----", operation or "----",
             f"timestamp={int(now)}",
             f"localtime={time.strftime('%b %d %H:%M:%S', time.localtime(now))}"]
    parts += [f"{k}={v}" for k, v in (fields or {}).items()]
    reason = " ".join(reason.split("\n")).replace("\t", " ")
    return "\t".join(parts + [reason]) + "\n"


@dataclass
class StatusEntry:
    indent: int
    status: str
    subdir: str
    operation: str
    fields: dict[str, str]
    reason: str


def parse(text: str) -> list[StatusEntry]:
    """Parse status.log lines (for reports and tests)."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip("\t"))
        cols = line.lstrip("\t").split("\t")
        status, subdir, operation = (cols + ["", "", ""])[:3]
        fields, reason = {}, ""
        for col in cols[3:]:
            key, eq, value = col.partition("=")
            if eq and key.isidentifier() and not reason:
                fields[key] = value
            else:
                reason = col if not reason else reason + "\t" + col
        entries.append(StatusEntry(indent, status, subdir, operation, fields, reason))
    return entries


def close_open_groups(lines: list[str], status: str, reason: str) -> list[str]:
    """A status.log cut short (its writer was killed): `lines` with a verdict
    line in the innermost open group and an END line for every open group,
    so the log stays well formed and carries the verdict given for it."""
    stack: list[StatusEntry] = []
    for entry in parse("\n".join(lines)):
        if entry.status == "START":
            stack.append(entry)
        elif entry.status.startswith("END") and stack:
            stack.pop()
    if not stack:
        return list(lines)
    inner = stack[-1]
    closing = [format_line(inner.indent + 1, status, inner.subdir, inner.operation, reason)]
    closing += [format_line(g.indent, f"END {status}", g.subdir, g.operation)
                for g in reversed(stack)]
    return list(lines) + [line.rstrip("\n") for line in closing]


@dataclass
class _Group:
    indent: int
    subdir: Optional[str]
    operation: Optional[str]
    statuses: list[str] = field(default_factory=list)


class StatusLog:
    """Writer of one status.log; thread-safe."""

    def __init__(self, path: Path, echo: Optional[TextIO] = None, prefix: str = "") -> None:
        self.path = path
        self._echo = echo
        self._prefix = prefix
        self._lock = threading.Lock()
        self._local = threading.local()

    def _stack(self) -> list[_Group]:
        stack: Optional[list[_Group]] = getattr(self._local, "stack", None)
        if stack is None:
            stack = []
            self._local.stack = stack
        return stack

    def context(self) -> list[_Group]:
        """The calling thread's open groups, to hand to a worker thread."""
        return list(self._stack())

    def adopt(self, context: list[_Group]) -> None:
        """Make a worker thread's records nest inside the groups of `context`."""
        self._local.stack = list(context)

    def _buffer(self) -> Optional[list[str]]:
        return getattr(self._local, "buffer", None)

    def _emit(self, line: str) -> None:
        buf = self._buffer()
        if buf is not None:
            buf.append(line)
            return
        self._write([line])

    def _write(self, lines: list[str]) -> None:
        with self._lock:
            with open(self.path, "a") as f:
                f.writelines(lines)
            if self._echo is not None:
                for line in lines:
                    self._echo.write(self._prefix + line)
                self._echo.flush()

    def record(self, status: str, subdir: Optional[str] = None,
               operation: Optional[str] = None, reason: str = "",
               fields: Optional[dict[str, str]] = None) -> None:
        stack = self._stack()
        indent = stack[-1].indent + 1 if stack else 0
        if stack:
            stack[-1].statuses.append(status)
        self._emit(format_line(indent, status, subdir, operation, reason, fields=fields))

    def record_raw(self, lines: list[str], extra_indent: int) -> None:
        """Embed another status.log's lines (a client's) one level deeper."""
        stack = self._stack()
        base = (stack[-1].indent + 1 if stack else 0) + extra_indent
        out = []
        for line in lines:
            if not line.strip():
                continue
            out.append("\t" * base + line.rstrip("\n") + "\n")
            status = line.lstrip("\t").split("\t", 1)[0]
            if line.startswith("END ") or (not line.startswith("\t") and status in SEVERITY):
                if stack:
                    stack[-1].statuses.append(status.replace("END ", ""))
        for line in out:
            self._emit(line)

    @contextlib.contextmanager
    def group(self, subdir: Optional[str], operation: Optional[str],
              buffered: bool = False) -> Iterator[_Group]:
        """START ... END <worst>; an escaping exception becomes ABORT or ERROR."""
        stack = self._stack()
        indent = stack[-1].indent + 1 if stack else 0
        own_buffer = buffered and self._buffer() is None
        if own_buffer:
            self._local.buffer = []
        self._emit(format_line(indent, "START", subdir, operation))
        group = _Group(indent, subdir, operation)
        stack.append(group)
        reason = ""
        try:
            yield group
        except KeyboardInterrupt:
            group.statuses.append("ABORT")
            reason = "interrupted"
            raise
        except BaseException as err:
            group.statuses.append("ERROR")
            reason = f"{type(err).__name__}: {err}"
            raise
        finally:
            stack.pop()
            final = worst(*group.statuses)
            if stack:
                stack[-1].statuses.append(final)
            self._emit(format_line(indent, f"END {final}", subdir, operation, reason))
            if own_buffer:
                lines = self._buffer() or []
                self._local.buffer = None
                self._write(lines)
