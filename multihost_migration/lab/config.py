"""Lab settings and its address plan, validated once at the edge."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from multihost_migration.errors import LabError
from multihost_migration.lab.netns import run

DEFAULT_SUBNET = "198.18.0.0/24"
#: The guests' L2 segment (see guestnet.py): the client namespace, the hosts'
#: bridges and the guests have addresses here; never routed anywhere.
DEFAULT_GUEST_SUBNET = "198.19.0.0/24"
#: Guest addresses the suite hands out (guest_ip in qemu/netdev.py): this
#: offset from the segment's network address, over GUEST_ADDRESS_COUNT.
GUEST_ADDRESS_FIRST = 100
GUEST_ADDRESS_COUNT = 128
DEFAULT_STATE_DIR = Path(os.environ.get("MHM_LAB_STATE", "/run/mhm-lab"))
DEFAULT_SHARED_DIR = Path(os.environ.get("MHM_LAB_SHARED", "/var/lib/mhm-lab/shared"))
PREFIX = "mhm"
MAX_HOSTS = 64
HOST_NAME_RE = re.compile(r"^h([1-9][0-9]*)$")

# The directories of /var/lib/virt_test that hosts see, and how they are
# mounted there (the user guide: images rw, reference data ro).
SHARED_SUBDIRS: dict[str, str] = {
    "images": "rw",
    "images_archive": "rw",
    "isos": "ro",
    "steps_data": "ro",
    "gpg": "ro",
}
VIRT_TEST_ROOT = Path("/var/lib/virt_test")


@dataclass(frozen=True)
class LabConfig:
    hosts: int = 2
    subnet: str = DEFAULT_SUBNET
    state_dir: Path = DEFAULT_STATE_DIR
    shared_dir: Path = DEFAULT_SHARED_DIR
    # (host, QEMU version) for `lab up --qemu`; hosts not named run the system's
    qemu: tuple[tuple[str, str], ...] = ()
    guest_subnet: str = DEFAULT_GUEST_SUBNET

    def __post_init__(self) -> None:
        if not 1 <= self.hosts <= MAX_HOSTS:
            raise LabError(f"--hosts must be between 1 and {MAX_HOSTS}, got {self.hosts}")
        try:
            net = ipaddress.IPv4Network(self.subnet, strict=True)
        except ValueError as err:
            raise LabError(f"--subnet {self.subnet!r} is not an IPv4 network: {err}") from err
        if net.num_addresses < 16 + self.hosts:
            raise LabError(f"--subnet {self.subnet} is too small for {self.hosts} hosts")
        try:
            seg = ipaddress.IPv4Network(self.guest_subnet, strict=True)
        except ValueError as err:
            raise LabError(f"--guest-subnet {self.guest_subnet!r} is not an IPv4 network: "
                           f"{err}") from err
        if seg.overlaps(net):
            raise LabError(f"--guest-subnet {self.guest_subnet} overlaps the lab subnet "
                           f"{self.subnet}")
        if seg.num_addresses < GUEST_ADDRESS_FIRST + GUEST_ADDRESS_COUNT:
            raise LabError(f"--guest-subnet {self.guest_subnet} is too small: guests take "
                           f"offsets {GUEST_ADDRESS_FIRST}..."
                           f"{GUEST_ADDRESS_FIRST + GUEST_ADDRESS_COUNT - 1}")
        for host, _ in self.qemu:
            if host not in self.host_names():
                raise LabError(f"--qemu names {host!r}, not a host of this lab "
                               f"({', '.join(self.host_names())})")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def host_names(self) -> list[str]:
        return [f"h{i}" for i in range(1, self.hosts + 1)]

    def address(self, name: str) -> str:
        """ctl is network+1, client network+2, hN is network+10+N."""
        base = self.network.network_address
        if name == "ctl":
            return str(base + 1)
        if name == "client":
            return str(base + 2)
        match = HOST_NAME_RE.match(name)
        if not match or int(match.group(1)) > self.hosts:
            raise LabError(f"unknown lab host {name!r}; hosts are ctl, "
                           + ", ".join(self.host_names()))
        return str(base + 10 + int(match.group(1)))

    @property
    def guest_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.guest_subnet)

    def segment_address(self, name: str) -> str:
        """On the guest segment: client network+2, hN network+10+N (the
        host's bridge); guests from network+GUEST_ADDRESS_FIRST on."""
        offset = int(ipaddress.IPv4Address(self.address(name))) - \
            int(self.network.network_address)
        return str(self.guest_network.network_address + offset)

    @staticmethod
    def netns_of(name: str) -> str:
        return f"{PREFIX}-{name}"


BRIDGE_NETNS = f"{PREFIX}-br"


def root_routes() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination routed in the root namespace (all tables)."""
    out = run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout
    nets = []
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("type") in ("broadcast",):
            continue
        try:
            nets.append(ipaddress.IPv4Network(dst, strict=False))
        except ValueError:
            continue
    return nets


def check_subnets_free(cfg: LabConfig) -> None:
    """Neither the lab subnet nor the guest segment may overlap a root route."""
    check_subnet_free(cfg.subnet)
    check_subnet_free(cfg.guest_subnet, "--guest-subnet")


def check_subnet_free(subnet: str, option: str = "--subnet") -> None:
    """Refuse a lab subnet that overlaps any route of the root namespace."""
    net = ipaddress.IPv4Network(subnet)
    for route in root_routes():
        if route.prefixlen == 32 and route.network_address.is_loopback:
            continue
        if net.overlaps(route) and not route.network_address.is_loopback:
            raise LabError(f"lab subnet {subnet} overlaps the root namespace route "
                           f"{route}; choose another with {option}")
