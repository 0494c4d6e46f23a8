"""Live console progress of a run, fed by the server from parallel threads.

Two modes, chosen by the caller (`is_tty`):

* not a tty (CI logs): plain lines, one per phase change and one per 10 %
  step of a migration, each prefixed with its group and host;
* a tty: a status block of one line per (group, host), redrawn in place
  (cursor up, erase, rewrite), at most every `min_interval` seconds for
  migration updates; `message()` prints a line above the block.

Every public method takes one lock and writes its text in a single
`write()`, so lines of parallel hosts never interleave.  `summary()` erases
the block and prints the final table.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, TextIO

UP_AND_CLEAR = "\x1b[{n}F\x1b[J"       # cursor up n lines to column 1, erase below
STEP = 10                               # percent between plain migration lines


@dataclass
class _Row:
    phase: str = ""
    migrations: dict[str, tuple[float, Optional[float]]] = field(default_factory=dict)


def _bar(percent: float, width: int = 10) -> str:
    filled = int(max(0.0, min(percent, 100.0)) / 100 * width)
    return "#" * filled + "-" * (width - filled)


def _mig_text(vm: str, percent: float, mbps: Optional[float]) -> str:
    rate = f" {mbps:.0f} Mbit/s" if mbps is not None else ""
    return f"{vm} [{_bar(percent)}] {percent:5.1f}%{rate}"


class Progress:
    """Console progress printer; every method is thread-safe."""

    def __init__(self, stream: TextIO, is_tty: bool, width: Optional[int] = None,
                 min_interval: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._tty = is_tty
        self._width = width if width is not None else shutil.get_terminal_size().columns
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], _Row] = {}
        self._steps: dict[tuple[str, str, str], int] = {}
        self._drawn = 0
        self._last_draw = float("-inf")

    # --- feeding --------------------------------------------------------

    def phase(self, group: str, host: str, phase_text: str) -> None:
        with self._lock:
            row = self._rows.setdefault((group, host), _Row())
            row.phase = phase_text
            row.migrations.clear()
            for key in [k for k in self._steps if k[:2] == (group, host)]:
                del self._steps[key]           # the next migration starts afresh
            if self._tty:
                self._redraw()
            else:
                self._write(f"[{group}] {host}: {phase_text}\n")

    def migration(self, group: str, host: str, vm: str, percent: float,
                  mbps: Optional[float] = None) -> None:
        with self._lock:
            row = self._rows.setdefault((group, host), _Row())
            row.migrations[vm] = (percent, mbps)
            if self._tty:
                if self._clock() - self._last_draw >= self._min_interval:
                    self._redraw()
                return
            step = int(max(0.0, min(percent, 100.0)) // STEP)
            if self._steps.get((group, host, vm)) != step:
                self._steps[(group, host, vm)] = step
                self._write(f"[{group}] {host}: migrating {_mig_text(vm, percent, mbps)}\n")

    def message(self, text: str) -> None:
        """A line of its own (above the block on a tty)."""
        with self._lock:
            if self._tty:
                self._redraw(before=text + "\n")
            else:
                self._write(text + "\n")

    def summary(self, tests: Sequence[Mapping[str, Any]]) -> None:
        """Erase the block and print the final table (results.json test dicts)."""
        with self._lock:
            clear = UP_AND_CLEAR.format(n=self._drawn) if self._tty and self._drawn else ""
            self._drawn = 0
            self._rows.clear()
            self._write(clear + summary_table(tests))

    # --- internals (lock held) -------------------------------------------

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()

    def _line(self, key: tuple[str, str], row: _Row) -> str:
        text = f"[{key[0]}] {key[1]}: {row.phase}"
        for vm, (percent, mbps) in row.migrations.items():
            text += "  " + _mig_text(vm, percent, mbps)
        limit = max(self._width - 1, 20)
        return text if len(text) <= limit else text[:limit - 1] + "…"

    def _redraw(self, before: str = "") -> None:
        out = UP_AND_CLEAR.format(n=self._drawn) if self._drawn else ""
        lines = [self._line(k, r) for k, r in self._rows.items()]
        self._write(out + before + "".join(line + "\n" for line in lines))
        self._drawn = len(lines)
        self._last_draw = self._clock()


def _worst_downtime(test: Mapping[str, Any]) -> Optional[float]:
    values = []
    for mig in test.get("migrations") or []:
        stats = mig.get("stats") if isinstance(mig, dict) else None
        for st in (stats or {}).values():
            value = st.get("downtime_ms") if isinstance(st, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values.append(float(value))
    return max(values) if values else None


def summary_table(tests: Sequence[Mapping[str, Any]]) -> str:
    """Aligned text table: test, hosts, verdict, duration, migrations, worst downtime."""
    head = ("test", "hosts", "verdict", "duration", "migrations", "worst downtime")
    rows = []
    counts: dict[str, int] = {}
    for test in tests:
        status = str(test.get("status", "NOSTATUS"))
        counts[status] = counts.get(status, 0) + 1
        duration = test.get("duration")
        worst = _worst_downtime(test)
        rows.append((str(test.get("name", "?")), ",".join(map(str, test.get("hosts") or [])),
                     status,
                     f"{duration:.1f} s" if isinstance(duration, (int, float)) else "-",
                     str(len(test.get("migrations") or [])),
                     f"{worst:.0f} ms" if worst is not None else "-"))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no tests"
    return "\n".join(lines) + f"\n{len(tests)} tests: {total}\n"
