"""Multifd with compression (zlib, zstd): RAM pages compressed on N
parallel channels.

Params: `migration_capabilities = multifd`, `migrate_parameter_multifd-
channels = N`, `migrate_parameter_multifd-compression = zlib|zstd`,
`qemu_features = multifd-compression:zlib` (or zstd): a QEMU built
without the method does not list it in its schema: TEST_NA.

Proven by QEMU's counters and the wire: the source sent its pages over
multifd (`ram.multifd-bytes` > 0); the bytes the source's network
interface towards the destination sent during the migration (its
/proc/net/dev tx counter, the migration being all but the only traffic)
are below `compression_max_ratio` (0.6) of the page bytes QEMU sent
(`ram.normal-bytes`): an uncompressed stream is slightly above 1 with its
headers.  (QEMU 10.0's multifd-bytes counts the compressed bytes too and
is recorded beside it; 7.2 counts pages before compression there, so its
multifd-bytes equals normal-bytes whatever the method.)  The method reads
back on both hosts; N+1 connections were open at once; the destination
checks every page of the memory dirtier.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Optional

from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import ram_counter
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._connections import counting_connections
from multihost_migration.scenarios._datapath import Evidence, where
from multihost_migration.scenarios._modern import FeatureMigration
from multihost_migration.verdicts import TestFail


def route_device(address: str) -> Optional[str]:
    """The network interface this host reaches `address` through."""
    try:
        out = subprocess.run(["ip", "-o", "route", "get", address], capture_output=True,
                             text=True, timeout=10).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[out.index("dev") + 1] if "dev" in out[:-1] else None


def tx_bytes(device: str, table: str = "/proc/self/net/dev") -> Optional[int]:
    """Bytes `device` has sent (this network namespace's /proc/net/dev)."""
    for line in Path(table).read_text().splitlines()[2:]:
        name, _, counters = line.partition(":")
        if name.strip() == device:
            return int(counters.split()[8])
    return None


def check_compression(reply: dict[str, Any], method: str, read_back: Any, channels: int,
                      connections: int, wire: int, max_ratio: float,
                      context: str) -> Evidence:
    """TestFail unless multifd carried the pages compressed with `method`:
    `wire` bytes left the interface for the pages' `normal-bytes`."""
    sent = ram_counter(reply, "multifd-bytes") or 0
    normal = ram_counter(reply, "normal-bytes") or 0
    ratio = wire / normal if normal else None
    problems = []
    if read_back != method:
        problems.append(f"multifd-compression reads back {read_back!r}, configured {method!r}")
    if sent <= 0 or ratio is None:
        problems.append(f"ram.multifd-bytes={sent}, normal-bytes={normal}")
    elif ratio >= max_ratio:
        problems.append(f"{wire} bytes on the wire for {normal} bytes of pages = "
                        f"{ratio:.2f} >= {max_ratio} (not compressed)")
    if connections != channels + 1:
        problems.append(f"{connections} connection(s) at most, expected {channels + 1}")
    if problems:
        raise TestFail(f"{context}: multifd {method} compression not proven: "
                       f"{'; '.join(problems)}")
    return {"multifd_bytes": sent, "normal_bytes": normal, "wire_bytes": wire,
            "wire_ratio": round(ratio or 0.0, 3),
            "qemu_ratio": round(sent / normal, 3), "connections": connections}


class MultifdCompressionMigration(FeatureMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.method = str(params.get("migrate_parameter_multifd-compression", "none"))
        self.channels = params.get_int("migrate_parameter_multifd-channels", 2)
        self.max_ratio = params.get_float("compression_max_ratio", 0.6)
        self.connections: dict[str, int] = {}
        self.wire: dict[str, int] = {}     # mig_id -> bytes the interface sent

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        device = route_device(self.address_of(mig_data.dst))
        if device is None or tx_bytes(device) is None:
            raise TestFail(f"{self.hostid}: no interface counter towards {mig_data.dst} "
                           f"({device}): the bytes on the wire cannot be measured")
        before = tx_bytes(device) or 0
        self._migrate_counted(mig_data)
        self.wire[mig_data.mig_id] = (tx_bytes(device) or 0) - before

    def _migrate_counted(self, mig_data: MigrationData) -> None:
        with counting_connections(mig_data.vms, mig_data.vm_ports, self.connections):
            super().migrate_vms_src(mig_data)

    def _method(self, vm: VM) -> Any:
        return vm.qmp("query-migrate-parameters").get("multifd-compression")

    def source_evidence(self, vm: VM, reply: dict[str, Any],
                        mig_data: MigrationData) -> Evidence:
        return check_compression(reply, self.method, self._method(vm), self.channels,
                                 self.connections.get(vm.name, 0),
                                 self.wire.get(mig_data.mig_id, 0), self.max_ratio,
                                 where(mig_data, vm.name, self.hostid))

    def dest_evidence(self, vm: VM, mig_data: MigrationData) -> Evidence:
        method = self._method(vm)
        if method != self.method:
            raise TestFail(f"{where(mig_data, vm.name, self.hostid)}: multifd-compression "
                           f"reads back {method!r} on the destination, configured "
                           f"{self.method!r}")
        return {"multifd_compression": method}

    def migration_scenario(self) -> None:
        self.migrate_recorded(self.vms, self.hosts[0], self.hosts[1], self.start_work,
                              self.check_work, params_append={"last_round": "yes"})


def run(test: Any, params: Params, env: Env) -> None:
    MultifdCompressionMigration(test, params, env).run()
