"""The guests' network in the lab: one L2 segment spanning every host.

    mhm-client  eth1 .2 ---------------+
    mhm-h1  br-guest .11 -- gseg ------+-- seg0 in mhm-br (the segment's switch)
              `-- tap per guest NIC    |
    mhm-h2  br-guest .12 -- gseg ------+
    mhm-client  eth0 198.18.0.2 -- br0 (the lab network: hosts reach its sshd)

Every host namespace has a bridge (`br-guest`) with an address on the
segment (hosts log in to their guests over it, as real hosts over their
bridge); its uplink `gseg` is a veth whose other end is a port of the
switch bridge `seg0` in the lab's bridge namespace.  QEMU creates one tap
per guest NIC and runs the lab's ifup script (`<state>/qemu-ifup`), which
puts the tap into the host's `br-guest`; the tap goes away with QEMU.

The client namespace `mhm-client` stands for the outside world: it is on
the segment (eth1) and on the lab network (eth0), where its own sshd
answers the hosts (key only, the lab's key; known_hosts written), so a
host measures its guest's network from outside the guest.  It forwards
nothing between the two.

Nothing here touches the root namespace: every command is `ip -n NS`.
`unplug(inv, "h2")` / `replug` set h2's uplink down / up (the fault
`mhm lab fault unplug-net h2`): h2's guests are cut from the segment.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from multihost_migration.errors import LabError
from multihost_migration.lab import netns
from multihost_migration.lab.config import (
    BRIDGE_NETNS, GUEST_ADDRESS_COUNT, GUEST_ADDRESS_FIRST, LabConfig)
from multihost_migration.lab.inventory import GuestNet, Inventory, LabHost

log = logging.getLogger(__name__)

BRIDGE = "br-guest"       # in every host namespace
UPLINK = "gseg"           # the host's veth to the switch
SWITCH = "seg0"           # the segment's switch, in the bridge namespace
CLIENT = "client"
CLIENT_SEGMENT_IF = "eth1"
IFUP_NAME = "qemu-ifup"

IFUP_SCRIPT = f"""#!/bin/sh
# QEMU runs this with the name of the tap it created for a guest NIC, in
# the host's network namespace: put the tap on the guest segment.
set -e
ip link set "$1" master {BRIDGE}
ip link set "$1" up
"""


def write_ifup(state_dir: Path) -> Path:
    path = state_dir / IFUP_NAME
    path.write_text(IFUP_SCRIPT)
    path.chmod(0o755)
    return path


def build_segment(cfg: LabConfig, hosts: list[str]) -> None:
    """The switch, each host's bridge and uplink; the client namespace."""
    netns.ip(BRIDGE_NETNS, "link", "add", SWITCH, "type", "bridge")
    netns.ip(BRIDGE_NETNS, "link", "set", SWITCH, "up")
    prefix = cfg.guest_network.prefixlen
    for host in hosts:
        ns = cfg.netns_of(host)
        netns.ip(ns, "link", "add", BRIDGE, "type", "bridge")
        port = f"s-{host}"
        netns.ip(BRIDGE_NETNS, "link", "add", port, "type", "veth",
                 "peer", "name", UPLINK, "netns", ns)
        netns.ip(BRIDGE_NETNS, "link", "set", port, "master", SWITCH, "up")
        netns.ip(ns, "link", "set", UPLINK, "master", BRIDGE, "up")
        netns.ip(ns, "addr", "add", f"{cfg.segment_address(host)}/{prefix}", "dev", BRIDGE)
        netns.ip(ns, "link", "set", BRIDGE, "up")
    client_ns = cfg.netns_of(CLIENT)
    netns.add(client_ns)
    netns.ip(BRIDGE_NETNS, "link", "add", f"p-{CLIENT}", "type", "veth",
             "peer", "name", "eth0", "netns", client_ns)
    netns.ip(BRIDGE_NETNS, "link", "set", f"p-{CLIENT}", "master", "br0", "up")
    netns.ip(client_ns, "addr", "add", f"{cfg.address(CLIENT)}/{cfg.prefixlen}", "dev", "eth0")
    netns.ip(client_ns, "link", "set", "eth0", "up")
    netns.ip(BRIDGE_NETNS, "link", "add", f"s-{CLIENT}", "type", "veth",
             "peer", "name", CLIENT_SEGMENT_IF, "netns", client_ns)
    netns.ip(BRIDGE_NETNS, "link", "set", f"s-{CLIENT}", "master", SWITCH, "up")
    netns.ip(client_ns, "addr", "add", f"{cfg.segment_address(CLIENT)}/{prefix}",
             "dev", CLIENT_SEGMENT_IF)
    netns.ip(client_ns, "link", "set", CLIENT_SEGMENT_IF, "up")


def describe(cfg: LabConfig, hosts: list[str], client: LabHost, ifup: Path) -> GuestNet:
    """The address plan the inventory records."""
    first = cfg.guest_network.network_address + GUEST_ADDRESS_FIRST
    return GuestNet(
        subnet=cfg.guest_subnet, bridge=BRIDGE, uplink=UPLINK,
        switch=f"{BRIDGE_NETNS}/{SWITCH}", client=client,
        client_address=cfg.segment_address(CLIENT),
        host_addresses={h: cfg.segment_address(h) for h in hosts},
        guest_first=str(first), guest_count=GUEST_ADDRESS_COUNT,
        ifup_script=str(ifup))


def _host_ns(inv: Inventory, name: str) -> str:
    if name in ("ctl", CLIENT):
        raise LabError(f"unplug-net/replug-net apply to lab hosts (h1, h2, ...), not {name}")
    return inv.host(name).netns


def unplug(inv: Inventory, name: str) -> None:
    """Cut host `name` (and its guests) from the guest segment."""
    netns.ip(_host_ns(inv, name), "link", "set", UPLINK, "down")
    log.info("%s: unplugged from the guest segment", name)


def replug(inv: Inventory, name: str) -> None:
    netns.ip(_host_ns(inv, name), "link", "set", UPLINK, "up")
    log.info("%s: plugged into the guest segment again", name)


def uplink_state(ns: str) -> str:
    """'UP', 'DOWN', ... of a host's uplink; 'missing' if there is none."""
    proc = netns.ip(ns, "-j", "link", "show", UPLINK, check=False)
    if proc.returncode != 0:
        return "missing"
    try:
        return str(json.loads(proc.stdout)[0].get("operstate", "?"))
    except (ValueError, IndexError, AttributeError):
        return "?"


def problems(inv: Inventory) -> list[str]:
    """What is broken in the guest segment (an unplugged host is a fault,
    not a breakage: see `unplugged`)."""
    if inv.guest_net is None:
        return ["no guest network (lab built by an older version: run `mhm lab up`)"]
    return [f"{host.name}: uplink {UPLINK} to the guest segment is missing"
            for host in inv.hosts if uplink_state(host.netns) == "missing"]


def unplugged(inv: Inventory) -> list[str]:
    """Hosts whose link to the guest segment is down (the unplug-net fault)."""
    return [host.name for host in inv.hosts
            if uplink_state(host.netns) not in ("UP", "missing")]
