"""The lab inventory: what later tools (tests, autotest-remote, demo) read.

Written as YAML by `mhm lab up`, printed by `mhm lab inventory`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from multihost_migration.errors import LabError


@dataclass(frozen=True)
class LabHost:
    name: str
    netns: str
    address: str
    sshd_pid: int = 0
    # What `qemu-system-x86_64` is on this host (`mhm lab up --qemu`).
    qemu_binary: str = ""
    qemu_version: str = ""


@dataclass(frozen=True)
class SshAccess:
    user: str
    port: int
    key: str
    known_hosts: str


@dataclass(frozen=True)
class SharedPath:
    host_path: str      # what hosts see (/var/lib/virt_test/images)
    lab_path: str       # where it lives on this machine
    mode: str           # rw | ro


@dataclass(frozen=True)
class GuestNet:
    """The guests' L2 segment and its address plan (lab/guestnet.py)."""

    subnet: str                 # 198.19.0.0/24: client, host bridges, guests
    bridge: str                 # the bridge in every host namespace
    uplink: str                 # each host's link to the segment (unplug-net)
    switch: str                 # NETNS/BRIDGE joining the hosts' uplinks
    client: LabHost             # the outside world: its address on the lab network, sshd
    client_address: str         # the client's address on the segment
    host_addresses: dict[str, str]   # host -> its bridge's address on the segment
    guest_first: str            # guests get addresses from here ...
    guest_count: int            # ... this many
    ifup_script: str            # QEMU's tap script: puts the tap on the bridge

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> "GuestNet":
        fields = dict(raw)
        fields["client"] = LabHost(**fields["client"])
        return cls(**fields)


@dataclass(frozen=True)
class Inventory:
    subnet: str
    state_dir: str
    shared_dir: str
    bridge_netns: str
    controller: LabHost
    hosts: list[LabHost]
    ssh: SshAccess
    shared_paths: dict[str, SharedPath]
    accel: str = "tcg"
    accel_reason: str = ""
    python: str = ""
    guest: dict[str, Any] = field(default_factory=dict)
    # Bumped when what `lab up` builds changes: an older lab is rebuilt.
    lab_format: int = 0
    guest_net: Optional[GuestNet] = None

    def host(self, name: str) -> LabHost:
        if name == "ctl":
            return self.controller
        for host in self.hosts:
            if host.name == name:
                return host
        names = ", ".join(["ctl"] + [h.name for h in self.hosts])
        raise LabError(f"unknown lab host {name!r}; the lab has {names}")

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_yaml())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Inventory":
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError as err:
            raise LabError(f"no lab inventory at {path}: run `mhm lab up` first") from err
        except yaml.YAMLError as err:
            raise LabError(f"lab inventory {path} is not valid YAML: {err}") from err
        try:
            return cls(
                subnet=raw["subnet"], state_dir=raw["state_dir"],
                shared_dir=raw["shared_dir"], bridge_netns=raw["bridge_netns"],
                controller=LabHost(**raw["controller"]),
                hosts=[LabHost(**h) for h in raw["hosts"]],
                ssh=SshAccess(**raw["ssh"]),
                shared_paths={k: SharedPath(**v) for k, v in raw["shared_paths"].items()},
                accel=raw.get("accel", "tcg"), accel_reason=raw.get("accel_reason", ""),
                python=raw.get("python", ""), guest=raw.get("guest") or {},
                lab_format=int(raw.get("lab_format", 0)),
                guest_net=GuestNet.from_raw(raw["guest_net"]) if raw.get("guest_net")
                else None,
            )
        except (KeyError, TypeError) as err:
            raise LabError(f"lab inventory {path} is incomplete ({err}): "
                           "run `mhm lab up` to repair it") from err
