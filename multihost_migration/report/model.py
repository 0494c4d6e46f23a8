"""results.json parsed once into typed, frozen objects for the report writers.

Every optional field may be absent (older runs, a failed migration, a host
that died): absent or mistyped numbers become None, absent lists become
empty tuples.  Only a missing/unreadable results.json or one whose top-level
shape is wrong raises `ReportError`, naming the file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from multihost_migration.errors import ReportError
from multihost_migration.results_format import REDACTED, MigrationRecord, redact
from multihost_migration.verdicts import PASSING, SEVERITY, worst

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


def _num(value: Any) -> Optional[float]:
    """A JSON number, or None for anything else (bools and strings included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _strs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(str(v) for v in value)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Sample:
    """One query-migrate snapshot taken during a migration."""

    t_ms: float
    transferred: Optional[float] = None
    remaining: Optional[float] = None
    total: Optional[float] = None
    mbps: Optional[float] = None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Optional["Sample"]:
        t_ms = _num(raw.get("t_ms"))
        if t_ms is None:
            return None
        return cls(t_ms, _num(raw.get("transferred")), _num(raw.get("remaining")),
                   _num(raw.get("total")), _num(raw.get("mbps")))


@dataclass(frozen=True)
class VMStats:
    """The final statistics of one VM in one migration."""

    vm: str
    status: str = "unknown"
    total_time_ms: Optional[float] = None
    downtime_ms: Optional[float] = None
    setup_time_ms: Optional[float] = None
    transferred: Optional[float] = None
    remaining: Optional[float] = None
    total: Optional[float] = None
    throughput_mbps: Optional[float] = None
    dirty_sync_count: Optional[float] = None
    cpu_throttle_percentage: Optional[float] = None
    error_desc: Optional[str] = None
    samples: tuple[Sample, ...] = ()
    downtime_limit_ms: Optional[float] = None
    guest_downtime_ms: Optional[float] = None
    bad_pages: Optional[float] = None
    passes: Optional[float] = None
    #: the guest network, measured from the client (stats[vm]["network"])
    network_downtime_ms: Optional[float] = None
    network_lost: Optional[float] = None
    tcp_continuity: Optional[bool] = None

    @classmethod
    def from_json(cls, vm: str, raw: Mapping[str, Any]) -> "VMStats":
        samples = [Sample.from_json(s) for s in raw.get("samples") or []
                   if isinstance(s, dict)]
        numbers = {key: _num(raw.get(key)) for key in (
            "total_time_ms", "downtime_ms", "setup_time_ms", "transferred",
            "remaining", "total", "throughput_mbps", "dirty_sync_count",
            "cpu_throttle_percentage", "downtime_limit_ms", "guest_downtime_ms",
            "bad_pages", "passes")}
        error = raw.get("error_desc")
        found = raw.get("network")
        net: Mapping[str, Any] = found if isinstance(found, dict) else {}
        tcp = net.get("tcp_alive_after")
        return cls(vm=vm, status=_str(raw.get("status"), "unknown"),
                   network_downtime_ms=_num(net.get("longest_gap_ms")),
                   network_lost=_num(net.get("lost")),
                   tcp_continuity=tcp if isinstance(tcp, bool) else None,
                   error_desc=str(error) if error is not None else None,
                   samples=tuple(sorted((s for s in samples if s is not None),
                                        key=lambda s: s.t_ms)),
                   **numbers)


@dataclass(frozen=True)
class Migration:
    """One migration (mig1..migN) of one or more VMs between two hosts."""

    id: str
    src: str
    dst: str
    vms: tuple[str, ...]
    role: str
    stats: tuple[VMStats, ...]

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "Migration":
        """An entry of results.json's `migrations`: a migrations.json record
        (results_format.MigrationRecord), each VM's statistics parsed."""
        record = MigrationRecord.from_json(raw)
        return cls(id=record.id, src=record.src, dst=record.dst, vms=record.vms,
                   role=record.role,
                   stats=tuple(VMStats.from_json(str(vm), _dict(s))
                               for vm, s in record.stats.items()))


@dataclass(frozen=True)
class HostResult:
    host: str
    status: str
    reason: str


@dataclass(frozen=True)
class TestResult:
    """One test run on one group of hosts."""

    name: str
    group: str
    hosts: tuple[str, ...]
    status: str
    reason: str
    duration: Optional[float]
    logdir: Optional[Path]          # resolved; None when it cannot be found
    params: Mapping[str, Any]
    host_results: tuple[HostResult, ...]
    migrations: tuple[Migration, ...]

    @property
    def passed(self) -> bool:
        return self.status in PASSING

    @property
    def worst_downtime_ms(self) -> Optional[float]:
        values = [s.downtime_ms for m in self.migrations for s in m.stats
                  if s.downtime_ms is not None]
        return max(values) if values else None

    @property
    def failed_hosts(self) -> tuple[HostResult, ...]:
        return tuple(h for h in self.host_results if h.status not in PASSING)


@dataclass(frozen=True)
class Job:
    machines: tuple[str, ...] = ()
    started: Optional[float] = None
    finished: Optional[float] = None
    control: str = ""
    args: tuple[str, ...] = ()

    @property
    def duration(self) -> Optional[float]:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


@dataclass(frozen=True)
class Results:
    results_dir: Path
    job: Job
    tests: tuple[TestResult, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> str:
        """The worst test status; NOSTATUS for a job that ran no test."""
        if not self.tests:
            return "NOSTATUS"
        return worst(*(t.status if t.status in SEVERITY else "ERROR" for t in self.tests))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for test in self.tests:
            out[test.status] = out.get(test.status, 0) + 1
        return out


def redact_args(args: Iterable[str]) -> tuple[str, ...]:
    """Control arguments fit for result files: `key=value` with a secret key
    (as `redact` decides for params) becomes `key=<redacted>`."""
    out = []
    for arg in args:
        key, sep, _ = arg.partition("=")
        out.append(f"{key}={REDACTED}" if sep and redact({key: ""})[key] == REDACTED
                   else arg)
    return tuple(out)


def inside(results_dir: Path, path: Path) -> bool:
    """True if `path`, symlinks resolved, is `results_dir` or below it."""
    try:
        path.resolve().relative_to(results_dir.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def resolve_logdir(results_dir: Path, raw: str, group: str, name: str) -> Optional[Path]:
    """The test's log directory, preferring the copy inside `results_dir`
    (results are often moved, e.g. as CI artifacts, after the run).  Only a
    directory inside `results_dir` (symlinks resolved) is ever used: names
    in results.json are data, not a licence to read elsewhere."""
    candidates = []
    if group and name:
        candidates.append(results_dir / group / name)
    if raw:
        path = Path(raw)
        if not path.is_absolute():
            candidates.append(results_dir / path)
        else:
            candidates.append(path)
    for path in candidates:
        if not inside(results_dir, path):
            log.warning("%s: log directory %s of test %r is outside the results "
                        "directory: not read", results_dir, path, name)
        elif path.is_dir():
            return path
    return None


def _test(results_dir: Path, raw: Mapping[str, Any]) -> TestResult:
    name = _str(raw.get("name"), "?")
    group = _str(raw.get("group"))
    hosts = _dict(raw.get("host_results"))
    return TestResult(
        name=name, group=group, hosts=_strs(raw.get("hosts")),
        status=_str(raw.get("status"), "NOSTATUS"), reason=_str(raw.get("reason")),
        duration=_num(raw.get("duration")),
        logdir=resolve_logdir(results_dir, _str(raw.get("logdir")), group, name),
        params=redact(_dict(raw.get("params"))),
        host_results=tuple(HostResult(str(h), _str(_dict(r).get("status"), "NOSTATUS"),
                                      _str(_dict(r).get("reason")))
                           for h, r in hosts.items()),
        migrations=tuple(Migration.from_json(m) for m in raw.get("migrations") or []
                         if isinstance(m, dict)))


def parse_results(results_dir: Path, data: Any, source: str) -> Results:
    """Build `Results` from the decoded results.json; `source` names the file."""
    if not isinstance(data, dict):
        raise ReportError(source, f"expected a JSON object, found {type(data).__name__}")
    tests = data.get("tests", [])
    if not isinstance(tests, list) or not all(isinstance(t, dict) for t in tests):
        raise ReportError(source, "'tests' must be a list of objects")
    job = _dict(data.get("job"))
    return Results(
        results_dir=results_dir,
        job=Job(machines=_strs(job.get("machines")), started=_num(job.get("started")),
                finished=_num(job.get("finished")), control=_str(job.get("control")),
                args=redact_args(_strs(job.get("args")))),
        tests=tuple(_test(results_dir, t) for t in tests))


def load_results(results_dir: Path) -> Results:
    """Read RESULTS_DIR/results.json; ReportError names what is missing or bad."""
    if not results_dir.is_dir():
        raise ReportError(str(results_dir), "no such results directory")
    path = results_dir / RESULTS_FILE
    if path.is_symlink() and not inside(results_dir, path):
        raise ReportError(str(path), "is a symlink to outside the results directory: "
                                     "not read")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(str(path), "missing (not an autotest-remote results "
                          "directory, or the job did not finish)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(str(path), f"cannot read: {err}") from err
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ReportError(str(path), f"invalid JSON: {err}") from err
    results = parse_results(results_dir.resolve(), data, str(path))
    log.debug("loaded %s: %d tests", path, len(results.tests))
    return results
