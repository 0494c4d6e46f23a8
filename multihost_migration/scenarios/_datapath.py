"""Shared by the data-path scenarios (postcopy, xbzrle, multifd, tls, disk I/O).

`DatapathMigration` is an IntegrityMigration (memory dirtier checked on the
destination after every migration) that also proves the data path under
test really carried the migration:

* on the source, once the migration completed and before its QEMU is
  stopped, `source_evidence(vm, reply, mig_data)` reads the final
  query-migrate reply (TestFail when the feature left no trace);
* on the destination, `dest_evidence(vm, mig_data)` after the guest checks;
* with `converge_after_passes = K`, the source holds the downtime-limit
  given in the settings (small: precopy cannot converge) until the feature
  shows in query-migrate (`feature_seen`) or K dirty passes completed, then
  sets `converge_downtime_limit` (ms): the migration keeps iterating long
  enough for the feature to act, then completes in any case (QEMU's own
  migration tests do the same);
* `migrate_recorded()` migrates, then both hosts exchange what they found,
  and the source adds it to the migration's statistics, so results.json
  shows it as `stats.<vm>.evidence.{src,dst}`;
* a guest console is logged in once per QEMU and reused (`_console`).

Not a scenario itself (no `run`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Mapping, Optional, Sequence

from multihost_migration.guest.console import ConsoleSession
from multihost_migration.migration import MigrationData, Work
from multihost_migration.params import Params
from multihost_migration.poller import Poller
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import ram_counter
from multihost_migration.qemu.vm import VM, VMState
from multihost_migration.scenarios._integrity import IntegrityMigration
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

Evidence = dict[str, Any]


def where(mig_data: MigrationData, vm: str, host: str) -> str:
    """'vm1 in mig1 h7->h8 (on h8)': what every finding names."""
    return f"{vm} in {mig_data.mig_id} {mig_data.src}->{mig_data.dst} (on {host})"


class DowntimeRelease(Poller):
    """Source, while a migration runs: poll query-migrate (every `interval`
    s); once `seen(reply)` or dirty-sync-count >= `after_passes`, set the
    downtime-limit to `limit_ms`, once."""

    def __init__(self, vm: VM, after_passes: int, limit_ms: int,
                 seen: Callable[[Mapping[str, Any]], bool], interval: float = 0.1) -> None:
        super().__init__(f"release-{vm.name}")
        self.vm = vm
        self.after_passes = after_passes
        self.limit_ms = limit_ms
        self.seen = seen
        self.interval = interval
        self.released_at: Optional[str] = None   # why it released, for the log

    def poll(self) -> bool:
        reply = self.vm.query_migrate()
        if reply.get("status") != "active":   # not yet, or over
            return True
        passes = ram_counter(reply, "dirty-sync-count") or 0
        if self.seen(reply):
            reason = f"feature seen after {passes} passes"
        elif passes >= self.after_passes:
            reason = f"{passes} passes, feature not seen"
        else:
            return True
        self.vm.set_migration_parameters({"downtime-limit": self.limit_ms})
        self.released_at = reason
        log.info("%s: downtime-limit %d ms now (%s): the migration may converge",
                 self.vm.name, self.limit_ms, reason)
        return False


class DatapathMigration(IntegrityMigration):
    """IntegrityMigration plus per-migration evidence from both hosts."""

    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        # mig_id -> vm -> evidence found on this host
        self.evidence: dict[str, dict[str, Evidence]] = {}
        self._sessions: dict[str, tuple[VM, ConsoleSession]] = {}
        self.converge_after_passes = params.get_int("converge_after_passes", 0)
        self.converge_downtime_limit = params.get_int("converge_downtime_limit", 1000)

    # -- hooks for the scenarios -------------------------------------------

    def source_evidence(self, vm: VM, reply: dict[str, Any],
                        mig_data: MigrationData) -> Evidence:
        """Source, migration completed: what proves the feature was used
        (raise TestFail when it was not).  `reply` is the final query-migrate."""
        return {}

    def dest_evidence(self, vm: VM, mig_data: MigrationData) -> Evidence:
        """Destination, guest checked: what proves the feature was used."""
        return {}

    def feature_seen(self, reply: Mapping[str, Any]) -> bool:
        """Source, during the migration: has the feature shown in query-migrate?"""
        return False

    # -- plumbing ------------------------------------------------------------

    def _console(self, name: str) -> ConsoleSession:
        """The VM's console, logged in once per QEMU (each login costs about a
        second under TCG): reused while that QEMU runs and the session is open."""
        vm = self.env.get_vm(name)
        cached = self._sessions.get(name)
        if (vm is not None and cached is not None and cached[0] is vm
                and cached[1].is_open and vm.state is VMState.RUNNING):
            return cached[1]
        session = super()._console(name)
        if vm is not None:
            self._sessions[name] = (vm, session)
        return session

    def _record(self, mig_data: MigrationData, vm: str, found: Evidence) -> None:
        if found:
            self.evidence.setdefault(mig_data.mig_id, {}).setdefault(vm, {}).update(found)
            log.info("%s: evidence %s", where(mig_data, vm, self.hostid), found)

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        if self.converge_after_passes <= 0:
            super().migrate_vms_src(mig_data)
            return
        with contextlib.ExitStack() as stack:
            for vm in mig_data.vms:
                stack.enter_context(DowntimeRelease(vm, self.converge_after_passes,
                                                    self.converge_downtime_limit,
                                                    self.feature_seen))
            super().migrate_vms_src(mig_data)

    def check_vms_src(self, mig_data: MigrationData) -> None:
        for vm in mig_data.vms:
            if not vm.is_alive():
                raise TestFail(f"{where(mig_data, vm.name, self.hostid)}: the source QEMU "
                               f"is gone; its migration statistics cannot be checked")
            self._record(mig_data, vm.name,
                         self.source_evidence(vm, vm.query_migrate(), mig_data))
        super().check_vms_src(mig_data)

    def check_work(self, mig_data: MigrationData) -> None:
        super().check_work(mig_data)
        for vm in mig_data.vms:
            self._record(mig_data, vm.name, self.dest_evidence(vm, mig_data))

    def migrate_recorded(self, vms_name: Sequence[str], srchost: str, dsthost: str,
                         start_work: Optional[Work] = None,
                         check_work: Optional[Work] = None,
                         params_append: Optional[dict[str, Any]] = None) -> MigrationData:
        """migrate_wait(), then the evidence of both hosts into the source's
        statistics of that migration (results.json)."""
        count = len(self.migrations)
        self.migrate_wait(vms_name, srchost, dsthost, start_work, check_work, params_append)
        mig_data = self.migrations[count]
        views = self.sync(self.evidence.get(mig_data.mig_id, {}),
                          tag=f"evidence-{mig_data.mig_id}")
        if mig_data.is_src():
            for role, host in (("src", srchost), ("dst", dsthost)):
                for vm, found in (views.get(host) or {}).items():
                    stats = mig_data.stats.setdefault(vm, {})
                    stats.setdefault("evidence", {})[role] = found
        return mig_data
