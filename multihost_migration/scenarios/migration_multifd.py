"""Multifd migration: RAM pages travel over N parallel channels.

Params: `migration_capabilities = multifd`,
`migrate_parameter_multifd-channels = N` (both hosts), the memory dirtier
(`memdirty_mib`) of IntegrityMigration.

What it verifies, and why: that multifd carried the data, not only that
QEMU accepted the capability.  On the source, while the migration runs, the
TCP connections of its QEMU to the destination's migration port are counted
(about every 50 ms, from /proc): multifd opens N channels beside the main
one, so N+1 connections must have been open at once.  After the migration
the source's query-migrate must report `ram.multifd-bytes` > 0 (bytes sent
over the multifd channels), and multifd-channels reads back N on both
hosts.  The destination checks every page of the dirtier.  With the
capability off, multifd-bytes is 0 and only the main connection exists:
the test FAILs naming both.

Timing: one migration of the 256 MiB guest, a few seconds under TCG; the
sampling period is far shorter than the migration even on a loaded host.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import ram_counter
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._connections import (  # noqa: F401 - re-exported
    ConnectionCounter, counting_connections, established_to_port, socket_inodes)
from multihost_migration.scenarios._datapath import DatapathMigration, Evidence, where
from multihost_migration.verdicts import TestFail

def check_multifd(reply: Mapping[str, Any], channels: int, connections: int,
                  channels_read_back: Optional[int], context: str) -> Evidence:
    """TestFail unless multifd carried bytes over `channels` channels (plus
    the main one) and the parameter reads back as configured."""
    sent = ram_counter(reply, "multifd-bytes") or 0
    problems = []
    if sent <= 0:
        problems.append(f"ram.multifd-bytes={sent}")
    if connections != channels + 1:
        problems.append(f"{connections} TCP connection(s) to the destination at most, "
                        f"expected {channels + 1} (main + {channels} multifd channels)")
    if channels_read_back != channels:
        problems.append(f"multifd-channels reads back {channels_read_back}, "
                        f"configured {channels}")
    if problems:
        raise TestFail(f"{context}: multifd did not carry the migration: "
                       f"{'; '.join(problems)}")
    return {"multifd_bytes": sent, "connections": connections,
            "multifd_channels": channels_read_back}


class MultifdMigration(DatapathMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.channels = params.get_int("migrate_parameter_multifd-channels", 2)
        self.connections: dict[str, int] = {}

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        with counting_connections(mig_data.vms, mig_data.vm_ports, self.connections):
            super().migrate_vms_src(mig_data)

    def _channels_read_back(self, vm: VM) -> Optional[int]:
        value = vm.qmp("query-migrate-parameters").get("multifd-channels")
        return value if isinstance(value, int) else None

    def source_evidence(self, vm: VM, reply: dict[str, Any],
                        mig_data: MigrationData) -> Evidence:
        return check_multifd(reply, self.channels, self.connections.get(vm.name, 0),
                             self._channels_read_back(vm),
                             where(mig_data, vm.name, self.hostid))

    def dest_evidence(self, vm: VM, mig_data: MigrationData) -> Evidence:
        read_back = self._channels_read_back(vm)
        if read_back != self.channels:
            raise TestFail(f"{where(mig_data, vm.name, self.hostid)}: multifd-channels "
                           f"reads back {read_back} on the destination, configured "
                           f"{self.channels}")
        return {"multifd_channels": read_back}

    def migration_scenario(self) -> None:
        self.migrate_recorded(self.vms, self.hosts[0], self.hosts[1], self.start_work,
                              self.check_work, params_append={"last_round": "yes"})


def run(test: Any, params: Params, env: Env) -> None:
    MultifdMigration(test, params, env).run()
