"""storage_mode = copy: a migration cancelled mid-mirror leaves the source
guest running on its own, consistent image, removes the destination's
partial copy, and the same guest then migrates with its disk.

mig1 (first host -> second): the mirror is slowed down
(`copy_cancel_speed`, default 4M bytes/s) and the migration cancelled once
it has copied `copy_cancel_pct` (default 30) % of the disks, before any
RAM moved (storage_copy.MirrorCancelled).  Then:

* source: no block job and no NBD node left, the guest `running`, its
  memory dirtier's invariant intact and the disk pattern written before
  mig1 reads back from its own image;
* destination: the incoming QEMU is stopped and its partial target image
  is gone.

mig2 (same direction, full speed) completes; the destination verifies
memory and the disk pattern (IntegrityMigration.check_work).
"""

from __future__ import annotations

import logging
from typing import Any

from multihost_migration.guest.checks import DiskPattern
from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.scenarios._cancel import CancelMigration
from multihost_migration.storage_copy import disks
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)


class CopyCancelScenario(CancelMigration):
    def migration_scenario(self) -> None:
        src, dst = self.hosts[0], self.hosts[1]
        self.migrate_wait(self.vms, src, dst, self.start_work, None, params_append={
            "expect_failure": "yes", "last_round": "no",
            "storage_copy_speed": self.params.get("copy_cancel_speed", "4M"),
            "storage_copy_cancel_pct": self.params.get("copy_cancel_pct", "30"),
            "cancel_incoming_must_end": "no", "cancel_incoming_timeout": "1"})
        self.migrate_wait(self.vms, src, dst, None, self.check_work,
                          params_append={"last_round": "yes"})

    def unexpected_completion(self, mig_data: MigrationData) -> str:
        return (f"{mig_data.mig_id}: the migration completed although it was to be "
                f"cancelled mid-mirror (storage_copy_cancel_pct)")

    def check_vms_src(self, mig_data: MigrationData) -> None:
        super().check_vms_src(mig_data)
        if not self.is_aborted_kind(mig_data):
            return
        for vm in mig_data.vms:
            where = f"{vm.name} on {self.hostid} after {mig_data.mig_id}"
            jobs = vm.qmp("query-block-jobs")
            nodes = [n.get("node-name") for n in vm.qmp("query-named-block-nodes")
                     if str(n.get("node-name", "")).startswith("mhm-nbd")]
            if jobs or nodes:
                raise TestFail(f"{where}: the cancelled copy left block jobs {jobs} / "
                               f"NBD nodes {nodes}")
            if self.disk_mib:
                DiskPattern(self._console(vm.name)).verify(self.disk_seed, self.disk_mib)
                log.info("%s: source image consistent, disk pattern reads back", where)

    def check_vms_dst(self, mig_data: MigrationData) -> None:
        super().check_vms_dst(mig_data)
        if not self.is_aborted_kind(mig_data):
            return
        for name in mig_data.vms_name:
            left = [str(spec.path) for spec, _ in disks(mig_data.plan, name)
                    if spec.path.exists()]
            if left:
                raise TestFail(f"{name} on {self.hostid}: the partial copy {left} of the "
                               f"cancelled {mig_data.mig_id} is still there")
            log.info("%s on %s: partial target removed after the cancel", name, self.hostid)


def run(test: Any, params: Params, env: Env) -> None:
    CopyCancelScenario(test, params, env).run()


__all__ = ["CopyCancelScenario", "run"]
