"""HTML for a test's migrations: a statistics table and charts per VM, and
per-round charts for tests that migrate several times (ping-pong)."""

from __future__ import annotations

from html import escape
from typing import Callable, Optional, Sequence

from multihost_migration.report.model import Migration, Sample, VMStats
from multihost_migration.report.svg import BarSeries, Series, bar_chart, hbar, line_chart

MIB = 1024.0 * 1024.0
#: Migrations shown expanded; more than this are folded (ping-pong has dozens).
OPEN_LIMIT = 3


def _mib(value: Optional[float]) -> str:
    return "–" if value is None else f"{value / MIB:,.1f} MiB"


def _ms(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _n(value: Optional[float], unit: str = "") -> str:
    return "–" if value is None else f"{value:,.6g}{unit}"


def _points(samples: Sequence[Sample],
            get: Callable[[Sample], Optional[float]], scale: float) -> list[tuple[float, float]]:
    return [(s.t_ms / 1000.0, v / scale) for s in samples
            if (v := get(s)) is not None]


def ram_chart(mig: Migration, st: VMStats) -> str:
    """RAM transferred over time from samples, else a transferred/total bar."""
    title = f"{st.vm} {mig.id}: RAM transferred"
    sent = _points(st.samples, lambda s: s.transferred, MIB)
    if sent:
        series = [Series("transferred", sent)]
        left = _points(st.samples, lambda s: s.remaining, MIB)
        if left:
            series.append(Series("remaining", left))
        total = st.total if st.total is not None else next(
            (s.total for s in reversed(st.samples) if s.total is not None), None)
        hlines = [(total / MIB, f"guest RAM {total / MIB:,.0f} MiB")] if total else []
        return line_chart("ram-transferred", title, series, "time (s)", "MiB", hlines)
    if st.transferred is not None:
        total = st.total / MIB if st.total is not None else None
        return hbar("ram-transferred", title + " (no samples)",
                    round(st.transferred / MIB, 1), total, "MiB")
    return '<p class="muted">no RAM statistics recorded</p>'


def throughput_chart(mig: Migration, st: VMStats) -> str:
    points = _points(st.samples, lambda s: s.mbps, 1.0)
    if len(points) < 2:
        return ""
    return line_chart("throughput", f"{st.vm} {mig.id}: throughput",
                      [Series("mbps", points)], "time (s)", "Mbit/s")


def downtime_chart(mig: Migration, st: VMStats) -> str:
    if st.downtime_ms is None:
        return ""
    limit = st.downtime_limit_ms
    marker = (limit, f"limit {limit:g} ms") if limit is not None else None
    out = hbar("downtime", f"{st.vm} {mig.id}: downtime (QEMU)"
               + ("" if limit is not None else " – no limit recorded"),
               st.downtime_ms, None, "ms", marker)
    if st.guest_downtime_ms is not None:
        out += hbar("guest-downtime", f"{st.vm} {mig.id}: downtime seen by the guest",
                    st.guest_downtime_ms, None, "ms", marker)
    if st.network_downtime_ms is not None:
        out += hbar("network-downtime", f"{st.vm} {mig.id}: network downtime (from the "
                    f"client, {_n(st.network_lost)} lost)", st.network_downtime_ms, None,
                    "ms", marker)
    return out


def stats_table(mig: Migration) -> str:
    head = ("VM", "status", "total time", "downtime", "limit", "guest downtime",
            "network downtime", "lost", "TCP", "setup",
            "transferred", "RAM", "throughput", "dirty syncs", "throttle", "passes",
            "bad pages", "error")
    rows = []
    for st in mig.stats:
        cells = (st.vm, st.status, _ms(st.total_time_ms), _ms(st.downtime_ms),
                 _ms(st.downtime_limit_ms), _ms(st.guest_downtime_ms),
                 _ms(st.network_downtime_ms), _n(st.network_lost),
                 {True: "kept", False: "LOST", None: ""}[st.tcp_continuity],
                 _ms(st.setup_time_ms), _mib(st.transferred), _mib(st.total),
                 _n(st.throughput_mbps, " Mbit/s"), _n(st.dirty_sync_count),
                 _n(st.cpu_throttle_percentage, " %"), _n(st.passes), _n(st.bad_pages),
                 st.error_desc or "")
        bad = st.status not in ("completed", "unknown") or bool(st.bad_pages)
        rows.append(f'<tr class="{"bad" if bad else ""}">'
                    + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    return ('<table class="stats"><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr>" + "".join(rows) + "</table>")


def migration_section(mig: Migration, expanded: bool) -> str:
    vms = ", ".join(mig.vms) or ", ".join(s.vm for s in mig.stats)
    status = ", ".join(sorted({s.status for s in mig.stats})) or "no statistics"
    summary = f"{escape(mig.id)}: {escape(vms)} {escape(mig.src)} → {escape(mig.dst)} ({escape(status)})"
    if not mig.stats:
        body = ('<p class="muted">no statistics recorded (the migration did not '
                'run or the source host lost them)</p>')
    else:
        charts = "".join(ram_chart(mig, st) + throughput_chart(mig, st)
                         + downtime_chart(mig, st) for st in mig.stats)
        body = stats_table(mig) + f'<div class="charts">{charts}</div>'
    return (f'<details class="migration" id="mig-{escape(mig.id)}"'
            f'{" open" if expanded else ""}><summary>{summary}</summary>{body}</details>')


def rounds_charts(migrations: Sequence[Migration]) -> str:
    """Total time and downtime per round, one bar series per VM."""
    ids = [m.id.removeprefix("mig") for m in migrations]
    vms = sorted({s.vm for m in migrations for s in m.stats})
    if not vms:
        return ""

    def series(get: Callable[[VMStats], Optional[float]]) -> list[BarSeries]:
        out = []
        for vm in vms:
            values = [next((get(s) for s in m.stats if s.vm == vm), None) for m in migrations]
            out.append(BarSeries(vm, values))
        return out
    limits = [s.downtime_limit_ms for m in migrations for s in m.stats
              if s.downtime_limit_ms is not None]
    hlines = [(max(limits), f"limit {max(limits):g} ms")] if limits else []
    return ('<div class="charts">'
            + bar_chart("rounds-total-time", "total time per round", ids,
                        series(lambda s: s.total_time_ms), "ms", x_label="migration")
            + bar_chart("rounds-downtime", "downtime per round", ids,
                        series(lambda s: s.downtime_ms), "ms", hlines, x_label="migration")
            + "</div>")


def migrations_html(migrations: Sequence[Migration]) -> str:
    if not migrations:
        return '<p class="muted">no migrations recorded</p>'
    out = []
    if len(migrations) > 1:
        out.append(f"<h4>{len(migrations)} migrations: per round</h4>")
        out.append(rounds_charts(migrations))
    expanded = len(migrations) <= OPEN_LIMIT
    out += [migration_section(m, expanded or any(s.status not in ("completed", "unknown")
                                                 for s in m.stats))
            for m in migrations]
    return "".join(out)
