"""A cancel in each state the source reaches, as QEMU's own migration test
does it: the source waits for the MIGRATION event of that state and sends
migrate_cancel at once.

`cancel_state` (one per cfg variant):

* setup, active, pre-switchover: with pause-before-switchover on both
  hosts (the migration cannot complete before the cancel: it waits at
  pre-switchover for a migrate-continue that never comes);
* device: migrate-continue at pre-switchover, the cancel sent on the
  `device` event (QEMU's test skips it as "happens too fast"; a large
  downtime-limit and a busy dirtier leave RAM to send in that state).  A
  cancel that comes too late finds the migration completed: that one is
  verified as a migration (guest on the destination, memory checked) and
  the next attempt starts from there, up to `cancel_attempts` (3);
* postcopy-active: after the switch to postcopy.  QEMU's test does not
  cancel there ("postcopy can't be cancelled"): the guest runs on the
  destination already.  Where QEMU refuses the cancel, the scenario
  proves that it did (its error) and that the migration completes with
  the guest intact on the destination; where it accepts it, the verdict
  names what became of both sides.

For every state but postcopy-active: the source reports `cancelled`, the
destination's incoming side ends (failed), the source guest runs on with
every page of the memory dirtier intact, and a second migration of the
same guest completes, verified on the destination (memory and disk).

A destination that loaded the whole stream but never started the guest
(`inmigrate`; 10.0: "Failed to get "write" lock", the cancelled source
holds its disks again) is no defect: one copy, the source's, verified next.

QEMU before 10.0 has three defects here (scenarios/_defects.py: what, the
upstream fix): the verdict is WARN naming it, with the evidence, only
where the migration's source QEMU is known to be older than the fix and
the outcome has the defect's signature; otherwise these outcomes FAIL.

* device: the source `cancelled` while the destination completed the load
  and holds the guest, running or paused (two copies: this one is stopped,
  the source's goes on and its next migration is verified); or every attempt
  this host sourced completed although its cancel went on the `device`
  event (sent <= 100 ms after QEMU emitted it, by the event's timestamp:
  7.2 answers QMP only after its device phase);
* device: the source's block nodes stay inactive under the running guest
  after the cancel (read on the source at once: `active` false, or, 7.2,
  the nodes written before the migration have no writer); both hosts then
  skip the verifying migration (it would abort the source QEMU) and the
  source's verdict is WARN (old QEMU) or FAIL naming the nodes;
* postcopy-active: the source takes the cancel (`cancelled`) and the
  destination's QEMU exits: the guest is lost.  The cancel is sent on
  every QEMU, also where it destroys the guest (7.2): the scenario tests
  QEMU's answer, and only sending it tells a fixed QEMU (refusal: GOOD)
  from one with the defect (WARN), e.g. a distribution's 7.2 with the
  fix backported; the guest is the test's own and this is its last step.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Optional

from multihost_migration.errors import MigrationError, QMPCommandError
from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._cancel import CancelMigration
from multihost_migration.scenarios._defects import (CANCEL_IN_DEVICE, CANCEL_IN_POSTCOPY,
                                                    host_version, inactive_after_cancel,
                                                    inactive_nodes, outran_signature,
                                                    postcopy_cancel_signature,
                                                    two_copies_signature, writable_nodes)
from multihost_migration.scenarios._modern import passes_at_least, status_event, wait_status
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

POSTCOPY = "postcopy-active"
#: Seconds a fixed QEMU gets to reactivate its disks after reporting 'cancelled'.
INACTIVE_SETTLE_S = 1.0


class CancelStateMigration(CancelMigration):
    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        state = str(mig_data.params.get("cancel_in") or "")
        if not state:
            super().migrate_vms_src(mig_data)
            return
        for vm in mig_data.vms:
            self._cancel_in(vm, state, mig_data)

    def _event(self, vm: VM, state: str, mark: int, timeout: float = 60.0) -> dict[str, Any]:
        event = vm.wait_for_event(status_event({state}), mark, timeout)
        if event is None:
            raise MigrationError(f"{vm.name}: no MIGRATION event {state!r} within "
                                 f"{timeout:.0f} s (status {vm.query_migrate().get('status')})")
        return event

    def _cancel_in(self, vm: VM, state: str, mig_data: MigrationData) -> None:
        where = f"{vm.name} {mig_data.mig_id} {mig_data.src} -> {mig_data.dst}"
        plan = mig_data.plan
        vm.apply_migration_settings(plan.settings)
        writable = writable_nodes(vm.qmp("x-debug-query-block-graph")) \
            if state == "device" else set()
        mark = vm.event_mark()
        vm.migrate(plan.request(mig_data.vm_ports, wait=False, postcopy_after_passes=None))
        if state == "device":
            self._event(vm, "pre-switchover", mark)
            mark = vm.event_mark()
            vm.continue_migration()
        elif state == POSTCOPY:
            wait_status(vm, {"active"}, 60, until=passes_at_least(1))
            mark = vm.event_mark()
            vm.start_postcopy()
        lag_ms = event_age_ms(self._event(vm, state, mark))   # the cancel goes at once
        sent = time.monotonic()
        try:
            stats = vm.cancel_migration(wait=True, timeout=30)
        except QMPCommandError as err:
            if state != POSTCOPY:
                raise
            self._refused(vm, err, mig_data)
            return
        if stats.status == "completed" and state == "device":
            handed_over(vm, where)
            self._outran(mig_data, where, lag_ms, int((time.monotonic() - sent) * 1000),
                         stats.downtime_ms)
            return
        if stats.status != "cancelled":
            raise TestFail(f"{where}: migrate_cancel on the {state!r} event left the "
                           f"migration {stats.status!r}, expected 'cancelled'")
        if state == POSTCOPY:
            self._postcopy_cancelled(vm, mig_data, where)
            return
        self.outcomes[mig_data.mig_id] = f"cancelled on the {state!r} event"
        if state == "device":
            self._disks_after_cancel(vm, mig_data, where, writable, stats.status)
        log.info("%s: cancelled on the %r event; source QEMU reports %s", where, state,
                 stats.status)

    def _refused(self, vm: VM, err: QMPCommandError, mig_data: MigrationData) -> None:
        """postcopy-active: QEMU refused the cancel; the migration must end."""
        log.info("%s: QEMU refused migrate_cancel in postcopy-active: %s", vm.name, err)
        self.outcomes[mig_data.mig_id] = f"cancel refused in postcopy-active: {err}"
        vm.wait_for_migration(mig_data.plan.timeouts.migration)

    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.too_late: list[str] = []     # source: cancels the migration outran
        self.lags: list[int] = []         # source: ms from QEMU's event to each of those
        self.lost: dict[str, str] = {}    # source: mig_id -> cancel taken in postcopy
        self.guest_lost: set[str] = set()  # destination: mig_ids whose guest is gone
        self.inactive: dict[str, str] = {}  # source: mig_id -> its disks left inactive

    def _outran(self, mig_data: MigrationData, where: str, lag_ms: int, took_ms: int,
                downtime_ms: Optional[int]) -> None:
        """Source: the migration completed although the cancel went on the event."""
        self.too_late.append(f"{mig_data.mig_id}: sent {lag_ms} ms after QEMU emitted the "
                             f"'device' event, QEMU's final status 'completed' {took_ms} ms "
                             f"later (downtime {downtime_ms} ms)")
        self.lags.append(lag_ms)
        log.info("%s: migrate_cancel sent %d ms after the 'device' event, yet the migration "
                 "completed; verified as a migration, another attempt follows", where, lag_ms)

    # -- the known defects (module docstring) -----------------------------------

    def _disks_after_cancel(self, vm: VM, mig_data: MigrationData, where: str,
                            writable: set[str], status: str) -> None:
        """Source: every block node active again after the cancel, else the
        known defect (WARN, recorded for both hosts) or a FAIL."""
        deadline = time.monotonic() + INACTIVE_SETTLE_S
        while True:
            nodes = inactive_nodes(writable, vm.qmp("x-debug-query-block-graph"),
                                   vm.qmp("query-named-block-nodes"))
            if not nodes or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if not nodes:
            log.info("%s: block nodes active after the cancel (%s)", where,
                     ", ".join(sorted(writable)) or "none writable")
            return
        warn, message = inactive_after_cancel(host_version(self.params, mig_data.src), nodes,
                                              status, vm.query_status(), where)
        if not warn:
            raise TestFail(message)
        self.inactive[mig_data.mig_id] = "; ".join(
            filter(None, [self.inactive.get(mig_data.mig_id), message]))
        log.warning("%s", message)

    def _disks_given_up(self, mig_data: MigrationData) -> bool:
        """Both hosts: whether the source left its disks inactive (the known
        defect: no verifying migration, it would abort QEMU); the source WARNs."""
        views = self.sync(self.inactive.get(mig_data.mig_id, ""),
                          tag=f"{mig_data.mig_id}-inactive-disks")
        found = [str(v) for v in views.values() if v]
        mine = self.inactive.get(mig_data.mig_id)
        if mine:
            self.warn(mine)
        elif found:
            log.info("%s: the source left its disks inactive (its verdict); no verifying "
                     "migration", mig_data.mig_id)
        return bool(found)

    def _postcopy_cancelled(self, vm: VM, mig_data: MigrationData, where: str) -> None:
        """Source: QEMU took the cancel in postcopy-active."""
        version = host_version(self.params, mig_data.src)
        evidence = (f"{where}: QEMU {version or '(version unknown)'} accepted migrate_cancel "
                    f"in postcopy-active (source 'cancelled', its QEMU "
                    f"{vm.query_status()!r})")
        if not CANCEL_IN_POSTCOPY.applies(version):
            raise TestFail(f"{evidence}: the guest, running on the destination, is cut "
                           f"from its source's RAM (no known defect of this QEMU)")
        self.lost[mig_data.mig_id] = evidence
        self.outcomes[mig_data.mig_id] = "cancel accepted in postcopy-active"
        log.warning("%s", evidence)

    def _source_status(self, mig_data: MigrationData) -> str:
        """The source's final status (its statistics reach the destination)."""
        return " ".join(sorted({str((s or {}).get("status")) for s in mig_data.stats.values()}))

    def _postcopy_lost(self, mig_data: MigrationData) -> None:
        """Destination after the source took the cancel in postcopy-active."""
        version = host_version(self.params, mig_data.src)
        timeout = mig_data.params.get_float("cancel_incoming_timeout", 30.0)
        for vm in mig_data.vms:
            where = f"{vm.name} on {self.hostid} ({mig_data.mig_id} from {mig_data.src})"
            status = vm.wait_for_migration_incoming(timeout=timeout, check=False)
            alive = vm.is_alive()
            tail = " | ".join([line for line in vm.log_tail().strip().splitlines()
                               if not line.startswith("#")][-2:])   # not its command line
            evidence = (f"{where}: the source (QEMU {version or 'version unknown'}) reported "
                        f"'cancelled' in postcopy-active; here the incoming side is "
                        f"{status!r} and QEMU {'still up' if alive else 'exited'} ({tail})")
            if not (CANCEL_IN_POSTCOPY.applies(version)
                    and postcopy_cancel_signature("cancelled", alive, status)):
                raise TestFail(f"{evidence}: not the known defect's outcome")
            self.env.unregister_vm(vm.name)
            vm.destroy(gracefully=False)
            self.guest_lost.add(mig_data.mig_id)
            self.warn(CANCEL_IN_POSTCOPY.warning(str(version), evidence + ": the guest is lost"))

    def incoming_completed(self, vm: VM, mig_data: MigrationData, where: str) -> None:
        """Destination: the stream its source cancelled was loaded here."""
        version = host_version(self.params, mig_data.src)
        state = str(mig_data.params.get("cancel_in"))
        source, runstate = self._source_status(mig_data), vm.query_status()
        evidence = (f"{where}: the source (QEMU {version or 'version unknown'}) reported "
                    f"{source!r} after migrate_cancel on the {state!r} event, yet the "
                    f"incoming migration completed here and the guest is {runstate!r}")
        if source == "cancelled" and runstate == "inmigrate":
            self._never_started(vm, evidence)
            return
        if not (state == "device" and CANCEL_IN_DEVICE.applies(version)
                and two_copies_signature(source, "completed", runstate)):
            raise TestFail(f"{where}: the incoming migration completed and the guest runs "
                           f"here, but the source aborted it ({evidence})")
        self.env.unregister_vm(vm.name)
        vm.destroy(gracefully=False)
        self.warn(CANCEL_IN_DEVICE.warning(str(version), f"{evidence}: two copies of the "
                                           f"guest (this one stopped; the source's runs on)"))

    def _never_started(self, vm: VM, evidence: str) -> None:
        """Destination: the stream loaded but the guest never started here
        (10.0: its disks' write lock is the cancelled source's again): one
        copy, the source's, whose next migration is verified."""
        tail = " | ".join([line for line in vm.log_tail().strip().splitlines()
                           if not line.startswith("#")][-2:])
        log.info("%s: never started here (QEMU: %s); this QEMU stopped, the source's copy "
                 "goes on", evidence, tail)
        self.env.unregister_vm(vm.name)
        vm.destroy(gracefully=False)

    def _never_took(self, state: str, attempts: int) -> None:
        """Every attempt completed: WARN on a host whose QEMU has the defect
        and sent each of its cancels while QEMU reported 'device'."""
        outran = "; ".join(self.too_late) or "details on the source"
        message = (f"migrate_cancel on the {state!r} event never took in {attempts} "
                   f"attempts: each migration completed ({outran})")
        version = host_version(self.params, self.hostid)
        sourced = sum(1 for m in self.migrations if m.is_src() and m.params.get("cancel_in"))
        if sourced == 0:     # only a destination: the sources judge their cancels
            log.info("%s; judged on the source", message)
            return
        if state == "device" and CANCEL_IN_DEVICE.applies(version) \
                and outran_signature(self.lags, sourced):
            self.warn(CANCEL_IN_DEVICE.warning(str(version), message))
            return
        raise TestFail(message)

    # -- the scenario's steps ----------------------------------------------------

    def wait_vms_dest(self, mig_data: MigrationData) -> None:
        if mig_data.params.get("cancel_in") == POSTCOPY \
                and self._source_status(mig_data) == "cancelled":
            self._postcopy_lost(mig_data)
            return
        super().wait_vms_dest(mig_data)

    def check_vms_src(self, mig_data: MigrationData) -> None:
        evidence = self.lost.get(mig_data.mig_id)
        if evidence is None:
            super().check_vms_src(mig_data)
            return
        for vm in mig_data.vms:    # postmigrate: it stopped serving the guest's pages
            self.env.unregister_vm(vm.name)
            vm.destroy(gracefully=False)
        version = str(host_version(self.params, mig_data.src))
        self.warn(CANCEL_IN_POSTCOPY.warning(version, f"{evidence}; the destination "
                                             f"reports what became of the guest"))

    def check_vms_dst(self, mig_data: MigrationData) -> None:
        if mig_data.mig_id not in self.guest_lost:
            super().check_vms_dst(mig_data)

    def is_aborted_kind(self, mig_data: MigrationData) -> bool:  # type: ignore[override]
        """A migration to cancel whose source did not complete it (the
        destination learns the source's status with its statistics)."""
        if not mig_data.params.get("cancel_in") or \
                mig_data.params.get("cancel_in") == POSTCOPY:
            return False
        return any((stats or {}).get("status") != "completed"
                   for stats in mig_data.stats.values()) or not mig_data.stats

    def check_if_completed(self, mig_data: MigrationData) -> None:
        """Destination: a migration whose cancel came too late is checked."""
        if not self.is_aborted_kind(mig_data) and mig_data.mig_id not in self.guest_lost:
            self.check_work(mig_data)

    def migration_scenario(self) -> None:
        hosts = self.hosts[:2]
        state = str(self.params.get("cancel_state"))
        if state == POSTCOPY:
            self.migrate_wait(self.vms, hosts[0], hosts[1], self.start_work,
                              self.check_if_completed,
                              params_append={"cancel_in": state, "last_round": "yes"})
            return
        attempts = self.params.get_int("cancel_attempts", 3)
        for attempt in range(attempts):
            src, dst = hosts[attempt % 2], hosts[(attempt + 1) % 2]
            self.migrate_wait(self.vms, src, dst, self.start_work if attempt == 0 else None,
                              self.check_if_completed,
                              params_append={"cancel_in": state, "last_round": "no"})
            if self.is_aborted_kind(self.migrations[-1]):
                if self._disks_given_up(self.migrations[-1]):
                    return
                self.migrate_wait(self.vms, src, dst, None, self.check_work,
                                  params_append={"last_round": "yes"})
                return
        self._never_took(state, attempts)


def handed_over(vm: VM, where: str, timeout: float = 5.0) -> None:
    """Source of a completed migration: 10.0 reports 'completed' a moment
    before its runstate leaves finish-migrate (postmigrate): wait for it."""
    deadline = time.monotonic() + timeout
    status = vm.query_status()
    while status == "finish-migrate" and time.monotonic() < deadline:
        time.sleep(0.05)
        status = vm.query_status()
    log.info("%s: completed; source QEMU %s", where, status)


def event_age_ms(event: Mapping[str, Any]) -> int:
    """How long ago QEMU emitted `event` (its timestamp; QEMU runs on this
    host, on this clock); -1 without a timestamp."""
    stamp = event.get("timestamp") or {}
    if "seconds" not in stamp:
        return -1
    emitted = float(stamp["seconds"]) + float(stamp.get("microseconds", 0)) / 1e6
    return int((time.time() - emitted) * 1000)


def run(test: Any, params: Params, env: Env) -> None:
    CancelStateMigration(test, params, env).run()
