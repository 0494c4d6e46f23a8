"""Fault injection inside the lab's namespaces (never the root namespace).

    partition(inv, "h1", "h2")     drop every packet between two hosts
    block_port(inv, "h2", 5555)    drop TCP to/from a port on a host
    heal(inv[, host])              remove every fault rule (all hosts by default)
    delay(inv, "h1", 200)          add latency on a host's link (needs sch_netem)
    kill(inv, "h2", "qemu")        signal processes of a host by name
    freeze(inv, "h2") / thaw(...)  stop / continue every process of a host

Network faults are nftables rules in a table of their own (`inet mhm_fault`)
in the host's network namespace, so `heal` removes exactly what was added.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

from multihost_migration.errors import LabError
from multihost_migration.lab import netns
from multihost_migration.lab.inventory import Inventory, LabHost

log = logging.getLogger(__name__)

TABLE = "mhm_fault"


def _host(inv: Inventory, name: str) -> LabHost:
    host = inv.host(name)
    if name == "ctl":
        raise LabError("faults apply to lab hosts (h1, h2, ...), not to the controller")
    return host


def _nft(host: LabHost, script: str) -> None:
    netns.run(["ip", "netns", "exec", host.netns, "nft", "-f", "-"], input_text=script)


def _ensure_table(host: LabHost) -> None:
    _nft(host, f"""table inet {TABLE} {{
  chain input {{ type filter hook input priority -10; policy accept; }}
  chain output {{ type filter hook output priority -10; policy accept; }}
}}
""")


def partition(inv: Inventory, a: str, b: str) -> None:
    """Drop all traffic between hosts a and b (both directions, both ends)."""
    ha, hb = _host(inv, a), _host(inv, b)
    for here, there in ((ha, hb), (hb, ha)):
        _ensure_table(here)
        _nft(here, f"add rule inet {TABLE} input ip saddr {there.address} drop\n"
                   f"add rule inet {TABLE} output ip daddr {there.address} drop\n")
    log.info("partitioned %s and %s", a, b)


def block_port(inv: Inventory, name: str, port: int) -> None:
    """Drop TCP traffic to and from `port` on host `name`."""
    if not 0 < port < 65536:
        raise LabError(f"port {port} out of range")
    host = _host(inv, name)
    _ensure_table(host)
    _nft(host, f"add rule inet {TABLE} input tcp dport {port} drop\n"
               f"add rule inet {TABLE} input tcp sport {port} drop\n"
               f"add rule inet {TABLE} output tcp dport {port} drop\n"
               f"add rule inet {TABLE} output tcp sport {port} drop\n")


def heal(inv: Inventory, name: str | None = None) -> None:
    """Remove the fault rules of one host, or of all hosts."""
    hosts = [_host(inv, name)] if name else inv.hosts
    for host in hosts:
        netns.run(["ip", "netns", "exec", host.netns, "nft", "delete", "table", "inet", TABLE],
                  check=False)
        netns.run(["ip", "netns", "exec", host.netns, "tc", "qdisc", "del", "dev", "eth0",
                   "root"], check=False)


def delay(inv: Inventory, name: str, ms: int) -> None:
    host = _host(inv, name)
    proc = netns.run(["ip", "netns", "exec", host.netns, "tc", "qdisc", "replace", "dev",
                      "eth0", "root", "netem", "delay", f"{ms}ms"], check=False)
    if proc.returncode != 0:
        raise LabError(f"cannot delay {name}'s link: {proc.stderr.strip()} "
                       "(the kernel needs the sch_netem module)")


def processes(inv: Inventory, name: str, pattern: str = "") -> list[int]:
    """PIDs in host `name` whose command line contains `pattern`."""
    host = _host(inv, name)
    found = []
    for pid in netns.pids(host.netns):
        if pid == host.sshd_pid and pattern == "":
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pattern in cmdline:
            found.append(pid)
    return found


def kill(inv: Inventory, name: str, pattern: str, sig: int = signal.SIGKILL) -> list[int]:
    """Signal the processes of host `name` matching `pattern`; returns their PIDs."""
    if not pattern:
        raise LabError("give a process pattern to kill (e.g. qemu-system)")
    victims = processes(inv, name, pattern)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return victims


def freeze(inv: Inventory, name: str) -> list[int]:
    """SIGSTOP every process of a host (its sshd included): a hung machine."""
    victims = processes(inv, name)
    host = _host(inv, name)
    victims.append(host.sshd_pid)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    return victims


def thaw(inv: Inventory, name: str) -> list[int]:
    victims = processes(inv, name) + [_host(inv, name).sshd_pid]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    return victims
