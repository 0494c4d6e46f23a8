"""Host selection: tests that require host properties run on hosts that have them.

Params a test may set (both hosts of a pair must meet each one):

    require_qemu_version = >=7.2          comparisons, comma separated (>=7.2, <10)
    require_cpu_vendor = GenuineIntel     /proc/cpuinfo vendor_id (intel, amd: aliases)
    require_cpu_flags = sse4_2 avx2       every flag present in /proc/cpuinfo
    require_mem_mib = 2048                MemTotal at least this
    require_free_disk_gib = 10            free space in the images directory at least this

The controller reads the selection's requirements (`Requirements.from_test`,
a bad value is a ConfigError naming the key), probes each host once over
SSH (`PROBE`, parsed by `HostFacts.parse`), then plans rounds (`plan`):
tests without requirements run on the job's pairs as always; each set of
requirements gets the pairs of hosts that meet it (the job's pairs whose
two hosts qualify, the other qualifying hosts paired in order).  A test no
pair can run is TEST_NA, its reason naming the requirement and each host's
shortfall.
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from multihost_migration.errors import ConfigError
from multihost_migration.imagespec import DEFAULT_IMAGES_DIR

log = logging.getLogger(__name__)

Version = tuple[int, ...]
KEYS = ("require_qemu_version", "require_cpu_vendor", "require_cpu_flags",
        "require_mem_mib", "require_free_disk_gib")
VENDORS = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}
_OPS: dict[str, Callable[[Version, Version], bool]] = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    "<": lambda a, b: a < b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "=": lambda a, b: a == b}


def parse_version(text: str) -> Optional[Version]:
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def _pad(v: Version) -> Version:
    return v + (0,) * (3 - len(v))


@dataclass(frozen=True)
class Requirements:
    """One test's host requirements; `raw` keeps the params as written."""
    qemu_version: tuple[tuple[str, Version], ...] = ()
    cpu_vendor: Optional[str] = None
    cpu_flags: frozenset[str] = frozenset()
    mem_mib: Optional[int] = None
    free_disk_gib: Optional[float] = None
    raw: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.raw)

    def __str__(self) -> str:
        return ", ".join(f"{k} = {v}" for k, v in self.raw)

    @classmethod
    def from_test(cls, test: Mapping[str, Any]) -> "Requirements":
        raw = tuple((k, str(test[k]).strip()) for k in KEYS if str(test.get(k, "")).strip())
        values = dict(raw)
        name = test.get("shortname", "?")

        def bad(key: str, expected: str) -> ConfigError:
            return ConfigError(f"test {name}: {key} = {values[key]!r}: {expected}")

        versions = []
        for part in values.get("require_qemu_version", "").split(","):
            part = part.strip()
            if not part:
                continue
            match = re.fullmatch(r"(>=|<=|==|!=|>|<|=)?\s*(\d+(?:\.\d+){0,2})", part)
            if not match:
                raise bad("require_qemu_version", "comparisons such as >=7.2, <10 expected")
            version = tuple(int(x) for x in match.group(2).split("."))
            versions.append((match.group(1) or ">=", _pad(version)))
        vendor = values.get("require_cpu_vendor")
        numbers: dict[str, float] = {}
        for key in ("require_mem_mib", "require_free_disk_gib"):
            if key in values:
                try:
                    numbers[key] = float(values[key])
                except ValueError:
                    raise bad(key, "a number expected") from None
                if numbers[key] < 0:
                    raise bad(key, "a number >= 0 expected")
        mem = numbers.get("require_mem_mib")
        return cls(tuple(versions), VENDORS.get(vendor.lower(), vendor) if vendor else None,
                   frozenset(values.get("require_cpu_flags", "").split()),
                   int(mem) if mem is not None else None,
                   numbers.get("require_free_disk_gib"), raw)


@dataclass(frozen=True)
class HostFacts:
    """What the probe found on one host (None: could not tell)."""
    qemu_version: Optional[Version] = None
    cpu_vendor: Optional[str] = None
    cpu_flags: frozenset[str] = frozenset()
    mem_mib: Optional[int] = None
    free_disk_gib: Optional[float] = None
    error: str = ""

    @classmethod
    def parse(cls, output: str) -> "HostFacts":
        fields: dict[str, str] = {}
        for line in output.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip()
        version = parse_version(fields.get("qemu", ""))
        mem = re.search(r"(\d+)", fields.get("mem", ""))
        disk = fields.get("disk", "").split()
        free_kib = int(disk[3]) if len(disk) >= 4 and disk[3].isdigit() else None
        return cls(_pad(version) if version else None, fields.get("vendor", "").split(":")[-1].strip()
                   or None, frozenset(fields.get("flags", "").split(":")[-1].split()),
                   int(mem.group(1)) // 1024 if mem else None,
                   free_kib / (1024 * 1024) if free_kib is not None else None)


def probe_command(qemu_binary: str, images_dir: str = DEFAULT_IMAGES_DIR) -> str:
    """One shell command that prints key=value lines `HostFacts.parse` reads."""
    return ("echo qemu=$(" + shlex.quote(qemu_binary) + " --version 2>/dev/null | head -n1); "
            "echo vendor=$(grep -m1 '^vendor_id' /proc/cpuinfo); "
            "echo flags=$(grep -m1 '^flags' /proc/cpuinfo); "
            "echo mem=$(grep -m1 '^MemTotal' /proc/meminfo); "
            "echo disk=$(df -Pk " + shlex.quote(images_dir) + " 2>/dev/null | tail -n1)")


def _show(v: Optional[Version]) -> str:
    return ".".join(map(str, v)) if v else "unknown"


def unmet(req: Requirements, facts: HostFacts) -> list[str]:
    """What of `req` the host lacks, one phrase each (empty: it qualifies)."""
    if facts.error:
        return [f"not probed ({facts.error})"]
    out = []
    for op, version in req.qemu_version:
        if facts.qemu_version is None or not _OPS[op](facts.qemu_version, version):
            out.append(f"QEMU {_show(facts.qemu_version)} is not {op}{_show(version)}")
    if req.cpu_vendor and facts.cpu_vendor != req.cpu_vendor:
        out.append(f"CPU vendor {facts.cpu_vendor or 'unknown'} is not {req.cpu_vendor}")
    missing = sorted(req.cpu_flags - facts.cpu_flags)
    if missing:
        out.append("CPU lacks " + " ".join(missing))
    if req.mem_mib is not None and (facts.mem_mib is None or facts.mem_mib < req.mem_mib):
        out.append(f"{facts.mem_mib} MiB of memory < {req.mem_mib}")
    if req.free_disk_gib is not None and (facts.free_disk_gib is None
                                          or facts.free_disk_gib < req.free_disk_gib):
        free = "unknown" if facts.free_disk_gib is None else f"{facts.free_disk_gib:.1f}"
        out.append(f"{free} GiB free < {req.free_disk_gib:g}")
    return out


@dataclass
class Round:
    """Tests run together, on these pairs (the pairs in parallel)."""
    tests: list[str]
    pairs: list[list[str]]
    requirements: Requirements = field(default_factory=Requirements)


@dataclass
class Plan:
    rounds: list[Round]
    not_applicable: list[tuple[str, str]]   # (test shortname, reason)


PairFn = Callable[[list[str]], list[list[str]]]


def plan(tests: Sequence[Mapping[str, Any]], pairs: Sequence[list[str]],
         facts: Mapping[str, HostFacts], pair_fn: PairFn,
         host_of: Callable[[str], str] = lambda m: m) -> Plan:
    """Rounds: the unrequiring tests on `pairs`, then one round per set of
    requirements on the pairs of the hosts (of `pairs`) that meet it."""
    by_req: dict[Requirements, list[str]] = {}
    for test in tests:
        by_req.setdefault(Requirements.from_test(test), []).append(str(test["shortname"]))
    rounds: list[Round] = []
    na: list[tuple[str, str]] = []
    plain = by_req.pop(Requirements(), [])
    if plain:
        rounds.append(Round(plain, [list(p) for p in pairs]))
    machines = [m for p in pairs for m in p]
    for req, names in by_req.items():
        shortfalls = {host_of(m): unmet(req, facts[host_of(m)]) for m in machines}
        ok = [m for m in machines if not shortfalls[host_of(m)]]
        kept = [list(p) for p in pairs if all(m in ok for m in p)]
        used = {m for p in kept for m in p}
        chosen = kept + pair_fn([m for m in ok if m not in used])
        if chosen:
            rounds.append(Round(names, chosen, req))
            continue
        why = "; ".join(f"{h}: {', '.join(s)}" for h, s in shortfalls.items() if s)
        reason = f"no pair of hosts meets {req}" + (f" ({why})" if why else "")
        na.extend((name, reason) for name in names)
    return Plan(rounds, na)


def probe_hosts(job: Any, machines: Sequence[str], qemu_binary: str) -> dict[str, HostFacts]:
    """Each host probed once (in parallel); a host that cannot be probed
    has facts with `error` set (it then meets no requirement)."""
    from multihost_migration.remote import RemoteHost

    def probe(machine: str) -> HostFacts:
        with RemoteHost(job.ssh_target(machine)) as remote:
            result = remote.run(probe_command(qemu_binary), timeout=60.0, check=False)
        return HostFacts.parse(result.stdout)

    results = job.parallel_simple(probe, list(machines), return_results=True) or []
    out = {}
    for machine, result in zip(machines, results):
        host = job.ssh_target(machine).hostname
        if isinstance(result, BaseException):
            log.warning("probing %s failed: %s", host, result)
            out[host] = HostFacts(error=str(result) or type(result).__name__)
        else:
            log.info("%s: %s", host, result)
            out[host] = result
    return out


def plan_for_job(job: Any, pairs: Sequence[list[str]], extra_lines: Sequence[str],
                 pair_fn: PairFn) -> Plan:
    """The job's selection planned on `pairs`; hosts probed only if a
    selected test has requirements."""
    from pathlib import Path

    from multihost_migration.server.selection import default_cfg, select_tests
    try:
        cfg = job.options.cfg or default_cfg(Path(job.control))
        tests = select_tests(cfg, list(extra_lines))
    except ConfigError:     # reported per pair by the server test, as always
        return Plan([Round([], [list(p) for p in pairs])] if pairs else [], [])
    needed = [t for t in tests if Requirements.from_test(t)]
    machines = [m for p in pairs for m in p]
    facts: dict[str, HostFacts] = {}
    if needed and machines:
        binaries = {str(t.get("qemu_binary", "qemu-system-x86_64")) for t in needed}
        facts = probe_hosts(job, machines, sorted(binaries)[0])
    result = plan(tests, pairs, facts, pair_fn, lambda m: job.ssh_target(m).hostname)
    if not needed:      # nothing to choose: every test on every pair, as always
        result.rounds = [Round([], [list(p) for p in pairs])] if pairs else []
    return result
