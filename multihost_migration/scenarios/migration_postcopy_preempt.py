"""Postcopy with preempt: during postcopy the pages the destination faults
on travel on a channel of their own, ahead of the background stream.

Params: `migration_capabilities = postcopy-ram postcopy-preempt` (both
hosts), `postcopy_after_passes`, a downtime-limit precopy cannot meet (as
in `postcopy`), `qemu_features = postcopy-preempt`.

Proven by QEMU itself: on the source, postcopy carried RAM
(`ram.postcopy-bytes` > 0) and postcopy-preempt reads back on; its QEMU
had two connections open at once to the destination's port (the main
stream and the preempt channel, counted from /proc while it migrates); on
the destination the capability reads back on and every page of the memory
dirtier is intact.  Without preempt: one connection, a FAIL naming it.
"""

from __future__ import annotations

from typing import Any

from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import ram_counter
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._connections import counting_connections
from multihost_migration.scenarios._datapath import Evidence, where
from multihost_migration.scenarios._modern import FeatureMigration, capability_on
from multihost_migration.verdicts import TestFail


def check_preempt(reply: dict[str, Any], capability: bool, connections: int,
                  context: str) -> Evidence:
    """TestFail unless postcopy carried RAM over main + preempt channels."""
    postcopy_bytes = ram_counter(reply, "postcopy-bytes") or 0
    problems = []
    if postcopy_bytes <= 0:
        problems.append(f"ram.postcopy-bytes={postcopy_bytes} (never switched to postcopy)")
    if not capability:
        problems.append("capability postcopy-preempt reads back off")
    if connections < 2:
        problems.append(f"{connections} connection(s) to the destination at most, "
                        f"expected 2 (main stream + preempt channel)")
    if problems:
        raise TestFail(f"{context}: postcopy preempt not proven: {'; '.join(problems)}")
    return {"postcopy_bytes": postcopy_bytes, "connections": connections,
            "postcopy_requests": ram_counter(reply, "postcopy-requests")}


class PostcopyPreemptMigration(FeatureMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.connections: dict[str, int] = {}

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        with counting_connections(mig_data.vms, mig_data.vm_ports, self.connections):
            super().migrate_vms_src(mig_data)

    def source_evidence(self, vm: VM, reply: dict[str, Any],
                        mig_data: MigrationData) -> Evidence:
        return check_preempt(reply, capability_on(vm, "postcopy-preempt"),
                             self.connections.get(vm.name, 0),
                             where(mig_data, vm.name, self.hostid))

    def dest_evidence(self, vm: VM, mig_data: MigrationData) -> Evidence:
        if not capability_on(vm, "postcopy-preempt"):
            raise TestFail(f"{where(mig_data, vm.name, self.hostid)}: postcopy-preempt "
                           f"reads back off on the destination")
        return {"postcopy_preempt": True}

    def migration_scenario(self) -> None:
        self.migrate_recorded(self.vms, self.hosts[0], self.hosts[1], self.start_work,
                              self.check_work, params_append={"last_round": "yes"})


def run(test: Any, params: Params, env: Env) -> None:
    PostcopyPreemptMigration(test, params, env).run()
