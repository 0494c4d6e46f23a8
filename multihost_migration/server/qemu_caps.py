"""What each host's QEMU is, asked of QEMU itself, and what a pair shares.

Preflight runs `BINARY --version` and `BINARY -machine help` on every host
for every binary the selected tests use (`qemu_binary`, per host
`qemu_binary_hostN`); this module parses the answers (no I/O) and judges the
pinned machine types against them:

- a VM's `machine_type` the host's QEMU does not know is an ERROR naming
  the host, the binary, its version and the machine type;
- an alias (`q35`, `pc`) that names different machine types on the hosts of
  one test is an ERROR too: the migration stream of one cannot be loaded by
  the other (pin a versioned type both know, e.g. `pc-q35-7.2`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

_VERSION_RE = re.compile(r"QEMU emulator version (\d+\.\d+(?:\.\d+)?)")
_ALIAS_RE = re.compile(r"\(alias of ([^)\s]+)\)")


@dataclass(frozen=True)
class QemuInfo:
    """One QEMU binary on one host: its version and its machine types."""
    binary: str
    version: str
    machines: frozenset[str]
    aliases: Mapping[str, str] = field(default_factory=dict)   # q35 -> pc-q35-10.0

    def resolve(self, machine: str) -> Optional[str]:
        """The machine type `machine` selects here (an alias resolved), or
        None when this QEMU does not know it."""
        if machine in self.aliases:
            return self.aliases[machine]
        return machine if machine in self.machines else None

    def describe(self) -> str:
        return f"{self.binary} (QEMU {self.version})"


def parse_version(text: str) -> str:
    """'10.0.2' from `qemu-system-x86_64 --version`; ValueError otherwise."""
    match = _VERSION_RE.search(text)
    if not match:
        raise ValueError(f"no 'QEMU emulator version' in {text[:200]!r}")
    return match.group(1)


def parse_machines(text: str) -> tuple[frozenset[str], dict[str, str]]:
    """(machine type names, alias -> machine type) from `-machine help`."""
    names: set[str] = set()
    aliases: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("Supported machines"):
            continue
        name = line.split(None, 1)[0]
        names.add(name)
        alias = _ALIAS_RE.search(line)
        if alias:
            aliases[name] = alias.group(1)
    return frozenset(names), aliases


def info_from_output(binary: str, version_text: str, machines_text: str) -> QemuInfo:
    machines, aliases = parse_machines(machines_text)
    return QemuInfo(binary, parse_version(version_text), machines, aliases)


def shared_machines(infos: Sequence[QemuInfo]) -> list[str]:
    """The versioned machine types (aliases left out) every QEMU knows."""
    if not infos:
        return []
    common = set.intersection(*(set(i.machines) - set(i.aliases) for i in infos))
    return sorted(common, key=_machine_key)


def _machine_key(name: str) -> tuple[str, tuple[int, ...], str]:
    match = re.match(r"^(.*?)-(\d+(?:\.\d+)*)$", name)
    if not match:
        return (name, (), name)
    return (match.group(1), tuple(int(p) for p in match.group(2).split(".")), name)


def machine_problems(wanted: Mapping[str, Mapping[str, str]],
                     infos: Mapping[str, QemuInfo]) -> list[tuple[str, str]]:
    """(host, problem) for one test: `wanted` maps host -> {vm: machine_type},
    `infos` host -> the QemuInfo of the binary that host runs in this test."""
    problems: list[tuple[str, str]] = []
    resolved: dict[str, dict[str, str]] = {}     # vm -> host -> machine type
    for host, vms in wanted.items():
        info = infos.get(host)
        if info is None:
            continue    # its binary did not run: reported by the qemu check
        for vm, machine in vms.items():
            concrete = info.resolve(machine)
            if concrete is None:
                problems.append((host, f"{info.describe()} has no machine type "
                                       f"{machine!r} ({vm}); pin one both hosts know"))
            else:
                resolved.setdefault(vm, {})[host] = concrete
    for vm, by_host in resolved.items():
        if len(set(by_host.values())) > 1:
            machine = wanted[next(iter(by_host))][vm]
            detail = ", ".join(f"{h}: {m} ({infos[h].describe()})" for h, m in by_host.items())
            for host in by_host:
                problems.append((host, f"machine_type {machine!r} ({vm}) is a different "
                                       f"machine type on each host ({detail}): pin a "
                                       f"versioned one both know"))
    return problems


def report(infos: Mapping[str, QemuInfo]) -> dict[str, object]:
    """The results.json entry of one test: each host's QEMU and the machine
    types all of them share."""
    return {"hosts": {h: {"binary": i.binary, "version": i.version}
                      for h, i in infos.items()},
            "shared_machine_types": shared_machines(list(infos.values()))}
