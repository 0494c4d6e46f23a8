"""IntegrityMigration: migrations whose result is verified inside the guest.

The base of the integrity scenario (migration_integrity), of after_login,
of the control scenarios (_cancel.py) and of the data-path ones
(_datapath.py).  What it checks, and how, is in migration_integrity's
docstring; `ping_pong()` runs its rounds.

Not a scenario itself (no `run`).
"""

from __future__ import annotations

import logging
from typing import Any

from multihost_migration.errors import GuestCheckError, MigrationError
from multihost_migration.guest.checks import DiskPattern, MemoryDirtier
from multihost_migration.guest.console import ConsoleSession
from multihost_migration.migration import MigrationData, MultihostMigration
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.storage import StoragePlan
from multihost_migration.scenarios._defects import tcg_lost_writes_possible

log = logging.getLogger(__name__)


def disk_load_command(after_mib: int, mib: int, device: str = "/dev/vda") -> str:
    """Guest shell line: rewrite `mib` MiB after the first `after_mib` MiB
    (past the disk pattern) with random data, synced, over and over, in the
    background: writes that land while the disks are mirrored."""
    return (f"(while :; do dd if=/dev/urandom of={device} bs=64k seek={after_mib * 16} "
            f"count={mib * 16} oflag=direct conv=fsync 2>/dev/null; sleep 0.2; done) "
            f">/dev/null 2>&1 &")


class IntegrityMigration(MultihostMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.rounds = params.get_int("migrate_count", 1)
        self.memdirty_mib = params.get_int("memdirty_mib", 16)
        self.disk_mib = params.get_int("disk_check_mib", 8)
        self.disk_seed = params.get_int("disk_check_seed", 1234)
        # storage_mode = copy: a disk under write load while the mirror runs
        self.disk_load_mib = params.get_int(
            "disk_load_mib", 4 if StoragePlan.from_params(params).copy else 0)
        workaround = str(params.get("tcg_tlb_workaround", "auto"))
        # auto: under TCG, between QEMU versions where the lost writes were seen
        self.tlb_churn = workaround == "yes" or (
            workaround == "auto" and tcg_lost_writes_possible(params))

    def _console(self, name: str) -> ConsoleSession:
        vm = self.env.get_vm(name)
        if vm is None:
            raise MigrationError(f"{name} is not running on {self.hostid}")
        return vm.wait_for_login(timeout=self.login_timeout)

    def start_work(self, mig_data: MigrationData) -> None:
        for name in mig_data.vms_name:
            session = self._console(name)
            if self.disk_mib:
                DiskPattern(session).write(self.disk_seed, self.disk_mib)
            if self.disk_load_mib:
                session.cmd(disk_load_command(self.disk_mib, self.disk_load_mib))
            if self.memdirty_mib:
                MemoryDirtier(session).start(self.memdirty_mib, tcg_workaround=self.tlb_churn)

    def check_work(self, mig_data: MigrationData) -> None:
        for name in mig_data.vms_name:
            session = self._console(name)
            if self.memdirty_mib:
                result = MemoryDirtier(session).check()
                log.info("%s after %s on %s: memory OK, %d pages checked", name,
                         mig_data.mig_id, self.hostid, result.pages)
            if self.disk_mib:
                DiskPattern(session).verify(self.disk_seed, self.disk_mib)
                log.info("%s after %s on %s: disk pattern OK", name, mig_data.mig_id,
                         self.hostid)
            if self.memdirty_mib and mig_data.params.get("last_round") != "yes":
                MemoryDirtier(session).start(self.memdirty_mib, tcg_workaround=self.tlb_churn)

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        try:
            super().migrate_vms_src(mig_data)
        except MigrationError as err:
            raise MigrationError(f"{err}\n{self._source_after_failure(mig_data)}") from err

    def _source_after_failure(self, mig_data: MigrationData) -> str:
        """What became of the source guests: they must run on, intact."""
        findings = []
        for vm in mig_data.vms:
            status = vm.query_status() if vm.is_alive() else "gone"
            if status != "running":
                findings.append(f"{vm.name}: source guest is {status!r}, not running")
                continue
            if not self.memdirty_mib:
                findings.append(f"{vm.name}: source guest still running")
                continue
            try:
                result = MemoryDirtier(self._console(vm.name)).check()
                findings.append(f"{vm.name}: source guest still running and its memory "
                                f"is intact ({result.pages} pages checked)")
            except GuestCheckError as err:
                findings.append(f"{vm.name}: source guest CORRUPTED after the failed "
                                f"migration: {err}")
        return "; ".join(findings)

    def ping_pong(self) -> None:
        """`migrate_count` rounds between the first two hosts, there and back;
        start_work before the first, check_work after each, then after_round."""
        first, second = self.hosts[0], self.hosts[1]
        for index in range(self.rounds):
            src, dst = (first, second) if index % 2 == 0 else (second, first)
            last = {"last_round": "yes" if index == self.rounds - 1 else "no"}
            self.migrate_wait(self.vms, src, dst,
                              self.start_work if index == 0 else None,
                              self.check_work, params_append=last)
            self.after_round(self.migrations[-1])

    def after_round(self, mig_data: MigrationData) -> None:
        """After each round's migration, on every host (subclasses check more)."""


__all__ = ["IntegrityMigration"]
