"""A live migration into a file on the shared storage with mapped-ram
(QEMU 9.0+), restored from it on the other host.

The source migrates its running guest to `file:<images dir>/<name>.mig`
with capability mapped-ram (every RAM page has its fixed offset in the
file, rewritten in place when dirtied again); once QEMU reports it
`completed` the guest is stopped there (postmigrate).  The destination,
started with `-incoming defer` and mapped-ram, then loads the same file
(`migrate-incoming file:...`) and runs the guest.  `qemu_features =
mapped-ram`: TEST_NA on a QEMU without it (7.2).

Proven by QEMU and the file: mapped-ram reads back on on both hosts, the
source's query-migrate `completed` and the destination's incoming
`completed`; the file's size covers the guest's RAM at fixed offsets
(size >= RAM, fewer blocks allocated than its size where pages were zero);
the destination verifies every page of the memory dirtier and the disk
pattern.  The file is removed afterwards.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from multihost_migration.errors import MigrationError
from multihost_migration.imagespec import images_dir
from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import ram_counter
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._datapath import Evidence, where
from multihost_migration.scenarios._modern import FeatureMigration, capability_on, wait_status
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)


class MappedRamMigration(FeatureMigration):
    def migration_file(self, mig_data: MigrationData, vm: str) -> Path:
        return Path(images_dir(self.params)) / f"mhm-{self.job_id}-{mig_data.mig_id}-{vm}.mig"

    # -- source: into the file ------------------------------------------------

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        for vm in mig_data.vms:
            path = self.migration_file(mig_data, vm.name)
            vm.apply_migration_settings(mig_data.plan.settings)
            log.info("%s: migrating to file:%s", vm.name, path)
            vm.qmp("migrate", uri=f"file:{path}")
            seen: list[str] = []
            reply = wait_status(vm, {"completed", "failed", "cancelled"},
                                mig_data.plan.timeouts.migration, seen)
            if reply.get("status") != "completed":
                raise MigrationError(f"{vm.name}: migration to file:{path} "
                                     f"{reply.get('status')}: {reply.get('error-desc', '')}"
                                     f"\n{vm.log_tail()}")

    def source_evidence(self, vm: VM, reply: dict[str, Any],
                        mig_data: MigrationData) -> Evidence:
        path = self.migration_file(mig_data, vm.name)
        size = path.stat().st_size
        allocated = path.stat().st_blocks * 512
        ram = ram_counter(reply, "total") or 0
        problems = []
        if not capability_on(vm, "mapped-ram"):
            problems.append("capability mapped-ram reads back off")
        if size < ram:
            problems.append(f"the file ({size} bytes) is smaller than the RAM ({ram} bytes)")
        if problems:
            raise TestFail(f"{where(mig_data, vm.name, self.hostid)}: mapped-ram not proven: "
                           f"{'; '.join(problems)}")
        return {"file_bytes": size, "file_allocated_bytes": allocated, "ram_bytes": ram,
                "transferred": ram_counter(reply, "transferred")}

    # -- destination: from the file --------------------------------------------

    def migrate_vms_dest(self, mig_data: MigrationData) -> dict[str, int]:
        mig_data.vms = []
        for name in mig_data.vms_name:
            vm = self._new_vm(name, "dst", mig_data)
            self.env.register_vm(name, vm)
            vm.create(incoming=True)
            vm.apply_migration_settings(mig_data.plan.settings)
            mig_data.vms.append(vm)
            mig_data.vm_ports[name] = 0     # nothing listens: the file is the stream
        return mig_data.vm_ports

    def wait_vms_dest(self, mig_data: MigrationData) -> None:
        for vm in mig_data.vms:
            path = self.migration_file(mig_data, vm.name)
            try:
                log.info("%s: loading file:%s (%d bytes)", vm.name, path, path.stat().st_size)
                vm.qmp("migrate-incoming", uri=f"file:{path}")
                vm.wait_for_migration_incoming(timeout=mig_data.plan.timeouts.migration)
            finally:
                try:
                    os.unlink(path)
                except OSError as err:
                    log.warning("%s: could not remove %s: %s", vm.name, path, err)

    def dest_evidence(self, vm: VM, mig_data: MigrationData) -> Evidence:
        status = vm.query_migrate().get("status")
        if not capability_on(vm, "mapped-ram") or status != "completed":
            raise TestFail(f"{where(mig_data, vm.name, self.hostid)}: incoming status "
                           f"{status!r}, mapped-ram {capability_on(vm, 'mapped-ram')}")
        return {"incoming": status, "mapped_ram": True}

    def migration_scenario(self) -> None:
        self.migrate_recorded(self.vms, self.hosts[0], self.hosts[1], self.start_work,
                              self.check_work, params_append={"last_round": "yes"})


def run(test: Any, params: Params, env: Env) -> None:
    MappedRamMigration(test, params, env).run()
