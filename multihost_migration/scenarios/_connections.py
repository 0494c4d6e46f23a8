"""ConnectionCounter: how many TCP connections a QEMU had open at once to
a port (the destination's migration port), sampled from /proc while the
migration runs.  Multifd opens N channels beside the main one; postcopy
preempt one more channel for urgent pages.

Not a scenario itself (no `run`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from multihost_migration.poller import Poller
from multihost_migration.qemu.vm import VM

SAMPLE_INTERVAL = 0.05
TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_ESTABLISHED = "01"


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` has open ({} when it is gone)."""
    inodes = set()
    try:
        entries = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return set()
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(target[len("socket:["):-1])
    return inodes


def established_to_port(tables: Iterable[str], port: int, inodes: set[str]) -> int:
    """Connections in /proc/net/tcp{,6} text `tables` that are established
    to remote `port` and belong to one of `inodes`."""
    count = 0
    for text in tables:
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10 or ":" not in fields[2]:
                continue
            try:
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            except ValueError:
                continue
            if fields[3] == _ESTABLISHED and remote_port == port and fields[9] in inodes:
                count += 1
    return count


def _read_tables() -> list[str]:
    tables = []
    for path in TCP_TABLES:
        try:
            tables.append(Path(path).read_text())
        except OSError:
            continue
    return tables


class ConnectionCounter(Poller):
    """Most connections a QEMU had open at once to a port, while running."""

    interval = SAMPLE_INTERVAL

    def __init__(self, pid: int, port: int) -> None:
        super().__init__(f"conn-count-{pid}")
        self.pid = pid
        self.port = port
        self.most = 0
        self.samples = 0

    def poll(self) -> bool:
        count = established_to_port(_read_tables(), self.port, socket_inodes(self.pid))
        self.samples += 1
        self.most = max(self.most, count)
        return True


@contextlib.contextmanager
def counting_connections(vms: Iterable[VM], ports: Mapping[str, int],
                         most: dict[str, int]) -> Iterator[None]:
    """While the block runs (the source's migration), count each VM's QEMU
    connections to its destination port; the most open at once go into
    `most` by VM name, also when the block fails."""
    with contextlib.ExitStack() as stack:
        counters = {vm.name: stack.enter_context(ConnectionCounter(vm.pid or 0, ports[vm.name]))
                    for vm in vms}
        try:
            yield
        finally:
            stack.close()
            most.update({name: counter.most for name, counter in counters.items()})


__all__ = ["ConnectionCounter", "counting_connections", "established_to_port",
           "socket_inodes"]
