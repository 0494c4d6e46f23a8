"""RecoverMigration: a postcopy migration cut by a network partition,
paused, healed and recovered (migrate-pause, migrate-recover, migrate
resume=true), the way tp-libvirt pauses postcopy with a network fault.

Source (drives it):
1. migrate with postcopy-ram; after `recover_postcopy_after_passes` dirty
   passes, migrate-start-postcopy; wait for `postcopy-active`;
2. `recover_run_s` s later the partition: an nftables table of its own on
   this host (PortBlock) DROPs TCP to and from the destination's migration
   port; `recover_partition_s` s later, migrate-pause (QEMU would wait for
   TCP to give up): the source is `postcopy-paused`;
3. tells the destination (sync "paused"), which pauses its side too (its
   QEMU never saw the FIN: dropped), and listens with migrate-recover on a
   new port, sent back (sync "recover");
4. heals (the table deleted), then migrate uri=... resume=true: the
   statuses go postcopy-recover -> postcopy-active -> completed; the time
   from the heal to `completed` is measured (`heal_to_completed_ms`).

Evidence (results.json, stats.<vm>.evidence): the source's statuses, from
its MIGRATION events (postcopy-paused and postcopy-recover must be among
them, with RAM sent in postcopy), the destination's status when told to pause and after
migrate-recover; the destination then checks every page of the memory
dirtier and the disk pattern.

Not a scenario itself (no `run`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional

from multihost_migration.errors import MigrationError, QMPCommandError
from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import ram_counter
from multihost_migration.qemu.transport import free_port
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._datapath import Evidence, where
from multihost_migration.scenarios._modern import (FeatureMigration, passes_at_least,
                                                   wait_status)
from multihost_migration.scenarios._portblock import PortBlock, table_name
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)


def migration_events(vm: VM, mark: int) -> list[str]:
    """The statuses of `vm`'s MIGRATION events since `mark`, in order."""
    return [str((e.get("data") or {}).get("status")) for e in vm.events_since(mark)
            if e.get("event") == "MIGRATION"]


class RecoverMigration(FeatureMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.after_passes = params.get_int("recover_postcopy_after_passes", 1)
        self.run_s = params.get_float("recover_run_s", 1.0)
        self.partition_s = params.get_float("recover_partition_s", 2.0)
        self.found: dict[str, Evidence] = {}          # vm -> what this host saw
        self._dest_thread: Optional[threading.Thread] = None
        self._dest_error: Optional[BaseException] = None

    # -- source ---------------------------------------------------------------

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        if len(mig_data.vms) != 1:
            raise TestFail("postcopy recovery migrates one VM (vms = vm1)")
        vm = mig_data.vms[0]
        plan = mig_data.plan
        session = self._sync_session(f"{mig_data.mig_id}-recover", [mig_data.src, mig_data.dst])
        try:
            vm.apply_migration_settings(plan.settings)
            mark = vm.event_mark()   # QEMU's MIGRATION events: every status it went through
            vm.migrate(plan.request(mig_data.vm_ports, wait=False, postcopy_after_passes=None))
            seen: list[str] = []
            wait_status(vm, {"active"}, 60, seen, until=passes_at_least(self.after_passes))
            vm.start_postcopy()
            wait_status(vm, {"postcopy-active"}, 30, seen)
            time.sleep(self.run_s)
            port = mig_data.vm_ports[vm.name]
            block = PortBlock(table_name(f"{self.job_id}_{vm.name}_recover"), port)
            with_block = self._partition(vm, block, seen)
            session.sync(None, tag="paused", timeout=self.sync_timeout)
            new_port = int(session.sync(None, tag="recover",
                                        timeout=self.sync_timeout)[mig_data.dst]["port"])
            block.remove()
            healed = time.monotonic()
            log.info("%s: partition healed (table removed); resuming to port %d",
                     vm.name, new_port)
            vm.qmp("migrate", uri=f"tcp:{self.address_of(mig_data.dst)}:{new_port}",
                   resume=True)
            wait_status(vm, {"postcopy-active", "completed", "failed"}, 60, seen)
            resumed_ms = int((time.monotonic() - healed) * 1000)
            final = wait_status(vm, {"completed", "failed", "cancelled"},
                                plan.timeouts.migration, seen)
            took_ms = int((time.monotonic() - healed) * 1000)
            if final.get("status") != "completed":
                raise MigrationError(f"{vm.name}: recovered migration {final.get('status')}: "
                                     f"{final.get('error-desc', '')}; statuses "
                                     f"{' -> '.join(seen)}\n{vm.log_tail()}")
            vm.wait_for_migration(30)   # VM state and final statistics
            self.found[vm.name] = {"statuses": migration_events(vm, mark),
                                   "heal_to_completed_ms": took_ms,
                                   "heal_to_postcopy_active_ms": resumed_ms,
                                   "partition_ms": with_block}
            log.info("%s: recovered; from the heal: %d ms to postcopy-active again, %d ms "
                     "to completed; statuses (MIGRATION events) %s", vm.name, resumed_ms,
                     took_ms, " -> ".join(self.found[vm.name]["statuses"]))
        finally:
            session.close()

    def _partition(self, vm: VM, block: PortBlock, seen: list[str]) -> int:
        """Drop the stream, pause the source; ms from the drop to paused."""
        start = time.monotonic()
        block.add()
        log.info("%s: partition: DROP TCP port %d (nft table inet %s)", vm.name,
                 block.port, block.table)
        try:
            time.sleep(self.partition_s)
            vm.qmp("migrate-pause")
            wait_status(vm, {"postcopy-paused"}, 30, seen)
        except BaseException:
            block.remove()
            raise
        return int((time.monotonic() - start) * 1000)

    def source_evidence(self, vm: VM, reply: dict[str, Any],
                        mig_data: MigrationData) -> Evidence:
        found = dict(self.found.get(vm.name) or {})
        statuses = found.get("statuses") or []
        postcopy_bytes = ram_counter(reply, "postcopy-bytes") or 0
        missing = [s for s in ("postcopy-active", "postcopy-paused", "postcopy-recover")
                   if s not in statuses]
        if missing or postcopy_bytes <= 0:
            raise TestFail(f"{where(mig_data, vm.name, self.hostid)}: recovery not proven: "
                           f"statuses {' -> '.join(statuses)} (missing {missing}), "
                           f"postcopy-bytes={postcopy_bytes}")
        found["postcopy_bytes"] = postcopy_bytes
        return found

    # -- destination ----------------------------------------------------------

    def migrate_vms_dest(self, mig_data: MigrationData) -> dict[str, int]:
        ports = super().migrate_vms_dest(mig_data)
        self._dest_error = None
        self._dest_thread = threading.Thread(target=self._dest_side, args=(mig_data,),
                                             name=f"recover-{mig_data.mig_id}", daemon=True)
        self._dest_thread.start()
        return ports

    def _dest_side(self, mig_data: MigrationData) -> None:
        vm = mig_data.vms[0]
        session = self._sync_session(f"{mig_data.mig_id}-recover", [mig_data.src, mig_data.dst])
        try:
            session.sync(None, tag="paused", timeout=mig_data.plan.timeouts.migration)
            told = str(vm.query_migrate().get("status"))
            try:
                vm.qmp("migrate-pause")
            except QMPCommandError as err:   # it noticed the broken stream itself
                log.info("%s: migrate-pause here: %s", vm.name, err)
            seen: list[str] = [told]
            wait_status(vm, {"postcopy-paused"}, 30, seen)
            port = free_port(mig_data.plan.listen)
            vm.qmp("migrate-recover", uri=f"tcp:{mig_data.plan.listen}:{port}")
            self.found[vm.name] = {"status_when_told": told, "recover_port": port,
                                   "statuses": migration_events(vm, 0)}
            log.info("%s: paused here (was %s), migrate-recover listening on port %d",
                     vm.name, told, port)
            session.sync({"port": port}, tag="recover", timeout=self.sync_timeout)
        except BaseException as err:  # noqa: B036 - reported in wait_vms_dest
            log.error("%s: destination side of the recovery: %s", vm.name, err)
            self._dest_error = err
            session.abort(f"{self.hostid}: destination side of the recovery: {err}")
        finally:
            session.close()

    def wait_vms_dest(self, mig_data: MigrationData) -> None:
        if self._dest_thread is not None:
            self._dest_thread.join(self.sync_timeout)
        if self._dest_error is not None:
            raise MigrationError(f"destination side of the recovery failed: "
                                 f"{self._dest_error}") from self._dest_error
        super().wait_vms_dest(mig_data)

    def dest_evidence(self, vm: VM, mig_data: MigrationData) -> Evidence:
        return dict(self.found.get(vm.name) or {})


__all__ = ["RecoverMigration"]
