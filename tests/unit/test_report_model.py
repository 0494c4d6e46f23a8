"""Tests of multihost_migration.report.model, and the synthetic results
directories the other report tests (and the functional HTML test) use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import pytest

from multihost_migration.errors import ReportError
from multihost_migration.report.model import load_results, resolve_logdir
from multihost_migration.status import format_line

GROUP = "multihost_migration.h1_h2"
T0 = 1_764_100_000.0
MIB = 1024 * 1024
FAIL_REASON = "guest command 'md5sum -c /tmp/mem.md5' exited 1: memory corrupted after mig1"
H2_REASON = "sync session 'x:mig1' aborted by h1: GuestCheckError on h1"


def vm_stats(downtime: float = 35, samples: bool = True, limit: Optional[float] = 300,
             total_time: float = 2400) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "status": "completed", "total_time_ms": total_time, "downtime_ms": downtime,
        "setup_time_ms": 2, "transferred": 270 * MIB, "remaining": 0,
        "total": 256 * MIB, "throughput_mbps": 940.5, "dirty_sync_count": 4,
        "cpu_throttle_percentage": None, "error_desc": None}
    if samples:
        stats["samples"] = [
            {"t_ms": t, "transferred": min(t, 2400) / 2400 * 270 * MIB,
             "remaining": max(0, 256 * MIB - t / 2400 * 256 * MIB),
             "total": 256 * MIB, "mbps": 900 + t / 100}
            for t in range(0, 2401, 200)]
    if limit is not None:
        stats["downtime_limit_ms"] = limit
        stats["guest_downtime_ms"] = downtime + 12
        stats["passes"] = 4
        stats["bad_pages"] = 0
    return stats


def migration(n: int, src: str = "h1", dst: str = "h2", **kw: Any) -> dict[str, Any]:
    return {"id": f"mig{n}", "src": src, "dst": dst, "vms": ["vm1"], "role": "src",
            "stats": {"vm1": vm_stats(**kw)}}


def passing_test(name: str = "migrate.tcp.passing") -> dict[str, Any]:
    return {"name": name, "group": GROUP, "hosts": ["h1", "h2"], "status": "GOOD",
            "reason": "completed successfully", "duration": 31.5,
            "params": {"vms": "vm1", "mem": "256", "password": "hunter2"},
            "host_results": {"h1": {"status": "GOOD", "reason": ""},
                             "h2": {"status": "GOOD", "reason": ""}},
            "migrations": [migration(1)]}


def failing_test(name: str = "migrate.tcp.failing") -> dict[str, Any]:
    return {"name": name, "group": GROUP, "hosts": ["h1", "h2"], "status": "FAIL",
            "reason": f"h1: {FAIL_REASON}; h2: {H2_REASON}", "duration": 12.25,
            "params": {"vms": "vm1"},
            "host_results": {"h1": {"status": "FAIL", "reason": FAIL_REASON},
                             "h2": {"status": "FAIL", "reason": H2_REASON}},
            "migrations": [{"id": "mig1", "src": "h1", "dst": "h2", "vms": ["vm1"],
                            "role": "src", "stats": {}}]}


def pingpong_test(rounds: int = 20, name: str = "migrate.tcp.pingpong") -> dict[str, Any]:
    migs = [migration(i, *(("h1", "h2") if i % 2 else ("h2", "h1")),
                      downtime=20 + i * 3, total_time=1500 + i * 40, samples=i == 1)
            for i in range(1, rounds + 1)]
    test = passing_test(name)
    test["migrations"] = migs
    return test


def minimal_test(name: str = "migrate.minimal") -> dict[str, Any]:
    """Only the fields every writer must tolerate the absence of the rest of."""
    return {"name": name, "status": "ERROR",
            "migrations": [{"id": "mig1", "stats": {"vm1": {"status": "failed"}}}]}


def _status_log(tests: list[dict[str, Any]]) -> str:
    out = [format_line(0, "START", None, None, when=T0),
           format_line(1, "START", GROUP, GROUP, when=T0)]
    for t in tests:
        name, status = t["name"], t["status"]
        out.append(format_line(2, "START", name, name, when=T0))
        for host, hr in (t.get("host_results") or {}).items():
            out.append(format_line(3, "START", f"{name}/{host}", name, when=T0))
            out.append(format_line(4, hr["status"], f"{name}/{host}", name, hr["reason"],
                                   when=T0 + 5, fields={"duration": "5.0"}))
            out.append(format_line(3, f"END {hr['status']}", f"{name}/{host}", name, when=T0))
        out.append(format_line(3, status, name, name, t.get("reason", ""), when=T0 + 6))
        out.append(format_line(2, f"END {status}", name, name, when=T0 + 6))
    out.append(format_line(1, "END GOOD", GROUP, GROUP, when=T0 + 60))
    out.append(format_line(0, "END GOOD", None, None, when=T0 + 60))
    return "".join(out)


def make_results(root: Path, tests: list[dict[str, Any]]) -> Path:
    """A results directory as autotest-remote writes it, with log files."""
    root.mkdir(parents=True, exist_ok=True)
    for t in tests:
        if "group" not in t:
            continue
        logdir = root / t["group"] / t["name"]
        t["logdir"] = str(logdir)
        (logdir).mkdir(parents=True, exist_ok=True)
        (logdir / "params.json").write_text(json.dumps(t.get("params", {})))
        for host in t.get("hosts", []):
            hdir = logdir / host
            (hdir / "debug").mkdir(parents=True, exist_ok=True)
            for f in ("debug/client.DEBUG", "debug/client.INFO", "client.console.log",
                      "status.log", "params.json"):
                (hdir / f).write_text(f"{host} {f}\n")
            (hdir / "migrations.json").write_text(json.dumps(t.get("migrations", [])))
            for mig in t.get("migrations", []):
                role = "src" if mig.get("src") == host else "dst"
                vdir = hdir / "vm1" / f"{mig['id']}-{role}"
                vdir.mkdir(parents=True, exist_ok=True)
                (vdir / "vm1-qemu.log").write_text("qemu\n")
                (vdir / "vm1-serial.log").write_text("serial\n")
    (root / "status.log").write_text(_status_log(tests))
    (root / "keyval").write_text(f"job_started={int(T0)}\n")
    (root / "debug").mkdir(exist_ok=True)
    (root / "debug" / "autoserv.DEBUG").write_text("debug\n")
    job = {"machines": ["h1", "h2"], "started": T0, "finished": T0 + 75.5,
           "control": "/work/main/control.srv", "args": ["accel=tcg"]}
    (root / "results.json").write_text(json.dumps({"job": job, "tests": tests}, indent=1))
    return root


def standard_results(root: Path) -> Path:
    return make_results(root, [passing_test(), failing_test(), pingpong_test(),
                               minimal_test()])


# --- tests of the model ---------------------------------------------------


def test_loads_every_kind_of_test(tmp_path: Path) -> None:
    res = load_results(standard_results(tmp_path / "r"))
    passing, failing, pingpong, minimal = res.tests
    assert res.verdict == "ERROR"
    assert res.counts() == {"GOOD": 2, "FAIL": 1, "ERROR": 1}
    assert res.job.duration == pytest.approx(75.5)
    st = passing.migrations[0].stats[0]
    assert (st.vm, st.downtime_ms, st.downtime_limit_ms, len(st.samples)) == ("vm1", 35, 300, 13)
    assert [h.host for h in failing.failed_hosts] == ["h1", "h2"]
    assert failing.migrations[0].stats == ()
    assert len(pingpong.migrations) == 20
    assert pingpong.worst_downtime_ms == 20 + 20 * 3
    assert passing.logdir == tmp_path / "r" / GROUP / passing.name


def test_missing_optional_fields_become_none(tmp_path: Path) -> None:
    minimal = load_results(standard_results(tmp_path / "r")).tests[3]
    assert (minimal.group, minimal.hosts, minimal.duration, minimal.logdir) == ("", (), None, None)
    mig = minimal.migrations[0]
    assert (mig.src, mig.dst, mig.vms) == ("?", "?", ())
    st = mig.stats[0]
    assert (st.status, st.downtime_ms, st.samples, st.guest_downtime_ms) == ("failed", None, (), None)
    assert minimal.worst_downtime_ms is None


def test_mistyped_numbers_are_ignored(tmp_path: Path) -> None:
    t = passing_test()
    t["migrations"][0]["stats"]["vm1"].update(downtime_ms="35", total=True,
                                              samples=[{"t_ms": "x"}, "junk", {"t_ms": 5}])
    st = load_results(make_results(tmp_path, [t])).tests[0].migrations[0].stats[0]
    assert (st.downtime_ms, st.total, [s.t_ms for s in st.samples]) == (None, None, [5])


def test_moved_results_dir_finds_logs_inside_it(tmp_path: Path) -> None:
    make_results(tmp_path / "old", [passing_test()])
    (tmp_path / "old").rename(tmp_path / "new")
    test = load_results(tmp_path / "new").tests[0]
    assert test.logdir == tmp_path / "new" / GROUP / "migrate.tcp.passing"
    assert resolve_logdir(tmp_path, "/nonexistent", "g", "n") is None


def test_missing_dir_names_it(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=f"^{tmp_path / 'nope'}: no such results directory"):
        load_results(tmp_path / "nope")


def test_missing_results_json_names_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError) as info:
        load_results(tmp_path)
    assert info.value.path == str(tmp_path / "results.json")
    assert "missing" in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("{not json", "invalid JSON: .*line 1 column 2"),
    ("[1, 2]", "expected a JSON object, found list"),
    ('{"tests": {"a": 1}}', "'tests' must be a list of objects"),
    ('{"tests": [1]}', "'tests' must be a list of objects"),
])
def test_bad_results_json_names_file_and_problem(tmp_path: Path, text: str,
                                                 message: str) -> None:
    (tmp_path / "results.json").write_text(text)
    with pytest.raises(ReportError, match=f"^{tmp_path / 'results.json'}: {message}"):
        load_results(tmp_path)


def test_report_error_str() -> None:
    assert str(ReportError("/r/results.json", "bad")) == "/r/results.json: bad"
