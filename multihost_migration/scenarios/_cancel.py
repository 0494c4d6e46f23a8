"""CancelMigration: migrations that may be cancelled or must fail, and the
checks that the source guest survives them intact.

The base of the control scenarios (cancel, auto_converge,
downtime_and_speed, firewall_block): a migration whose params (params_append) carry
`cancel_trigger_pct`, or `cancel_trigger_after_s` with
`cancel_trigger_min_passes`, is cancelled by the source on that trigger; one
with `expect_failure = yes` must end without completing (an outside fault,
the stall watchdog).  Both are then checked as above instead of as a
completed migration (`cancel_incoming_must_end = no`: a destination still
waiting after the timeout is only logged, e.g. when its FIN was dropped).

Not a scenario itself (no `run`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Mapping, Optional

from multihost_migration.errors import GuestCheckError, MigrationError
from multihost_migration.guest.checks import Heartbeat, MemoryDirtier
from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import MigrationSample, ram_counter, ram_progress_pct
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._integrity import IntegrityMigration
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

#: Seconds between query-migrate polls while waiting for the cancel point.
POLL_INTERVAL = 0.1


class CancelTrigger:
    """When the source cancels: at `at_pct` % of RAM, or once the migration
    has been active `after_s` seconds with at least `min_passes` dirty-sync
    passes (a migration that does not converge).

    (A plain class: the client loads scenario modules outside sys.modules,
    where @dataclass cannot resolve its module.)"""

    def __init__(self, at_pct: Optional[float] = None, after_s: Optional[float] = None,
                 min_passes: int = 0) -> None:
        self.at_pct = at_pct
        self.after_s = after_s
        self.min_passes = min_passes

    @classmethod
    def from_params(cls, params: Params) -> Optional["CancelTrigger"]:
        at_pct = params.get("cancel_trigger_pct")
        after_s = params.get("cancel_trigger_after_s")
        if at_pct in (None, "") and after_s in (None, ""):
            return None
        return cls(at_pct=float(at_pct) if at_pct not in (None, "") else None,
                   after_s=float(after_s) if after_s not in (None, "") else None,
                   min_passes=params.get_int("cancel_trigger_min_passes", 0))

    def reached(self, reply: Mapping[str, Any], elapsed_s: float) -> bool:
        if reply.get("status") != "active":
            return False
        if self.at_pct is not None:
            pct = ram_progress_pct(reply)
            if pct is not None and pct >= self.at_pct:
                return True
        if self.after_s is not None and elapsed_s >= self.after_s:
            return (ram_counter(reply, "dirty-sync-count") or 0) >= self.min_passes
        return False

    def describe(self) -> str:
        if self.at_pct is not None:
            return f"at {self.at_pct:g} % of RAM"
        return (f"after {self.after_s:g} s still active with >= {self.min_passes} "
                f"dirty-sync passes")


class CancelMigration(IntegrityMigration):
    """IntegrityMigration whose migrations may be cancelled or expected to fail
    (see the module docstring); ordinary migrations behave as in the base."""

    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        #: mig_id -> what happened to it on this host (for logs and checks)
        self.outcomes: dict[str, str] = {}

    # -- which kind of migration ------------------------------------------------

    @staticmethod
    def is_aborted_kind(mig_data: MigrationData) -> bool:
        """A migration that must end without completing."""
        return (CancelTrigger.from_params(mig_data.params) is not None
                or mig_data.params.get_bool("expect_failure", False))

    # -- source -------------------------------------------------------------------

    def start_work(self, mig_data: MigrationData) -> None:
        """Disk pattern and memory dirtier (IntegrityMigration), and the guest
        heartbeat when the VMs record it (`heartbeat = yes`)."""
        super().start_work(mig_data)
        if mig_data.params.get_bool("heartbeat", False):
            for name in mig_data.vms_name:
                Heartbeat(self._console(name)).start()

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        trigger = CancelTrigger.from_params(mig_data.params)
        if trigger is not None:
            for vm in mig_data.vms:
                self._migrate_and_cancel(vm, mig_data, trigger)
            return
        if mig_data.params.get_bool("expect_failure", False):
            try:
                # the base without IntegrityMigration's post-mortem: the
                # source is checked in check_vms_src like a cancelled one
                super(IntegrityMigration, self).migrate_vms_src(mig_data)
            except MigrationError as err:
                self.outcomes[mig_data.mig_id] = f"failed as expected: {err}"
                log.info("%s %s -> %s: the migration did not complete, as expected: %s",
                         mig_data.mig_id, mig_data.src, mig_data.dst, err)
                return
            raise TestFail(self.unexpected_completion(mig_data))
        super().migrate_vms_src(mig_data)

    def unexpected_completion(self, mig_data: MigrationData) -> str:
        """The reason when an expected failure completed instead (subclasses
        say why it was expected)."""
        return (f"{mig_data.mig_id} {mig_data.src} -> {mig_data.dst}: the migration "
                f"completed, but it was expected to fail")

    def completed_early(self, where: str, elapsed: float, trigger: CancelTrigger) -> str:
        """The reason when a migration to cancel completed first."""
        return (f"{where}: completed after {elapsed:.1f} s, before the cancel point "
                f"({trigger.describe()}); slow it down (max-bandwidth) so the cancel "
                f"hits it in flight")

    def _migrate_and_cancel(self, vm: VM, mig_data: MigrationData,
                            trigger: CancelTrigger) -> None:
        where = f"{vm.name} {mig_data.mig_id} {mig_data.src} -> {mig_data.dst}"
        vm.apply_migration_settings(mig_data.plan.settings)
        vm.migrate(mig_data.plan.request(mig_data.vm_ports, timeout=self.mig_timeout,
                                         wait=False))
        started = time.monotonic()
        deadline = started + self.mig_timeout
        samples: list[MigrationSample] = []
        while True:
            reply = vm.query_migrate()
            elapsed = time.monotonic() - started
            samples.append(MigrationSample.from_query(int(elapsed * 1000), reply))
            status = str(reply.get("status"))
            if status == "completed":
                raise TestFail(self.completed_early(where, elapsed, trigger))
            if status in ("failed", "cancelled"):
                raise MigrationError(f"{where}: {status} by itself after {elapsed:.1f} s "
                                     f"before the cancel point ({trigger.describe()}): "
                                     f"{reply.get('error-desc', '')}\n{vm.log_tail()}")
            if trigger.reached(reply, elapsed):
                break
            if time.monotonic() >= deadline:
                vm.cancel_migration(wait=True)
                raise MigrationError(f"{where}: cancel point ({trigger.describe()}) not "
                                     f"reached within {self.mig_timeout:.0f} s (status "
                                     f"{status}, {ram_progress_pct(reply)} % of RAM); "
                                     f"cancelled")
            time.sleep(POLL_INTERVAL)
        pct = ram_progress_pct(reply) or 0.0
        log.info("%s: cancelling %s: %.1f s, %.1f %% of RAM, %d MiB sent, %d MiB "
                 "remaining, %s dirty-sync passes, expected downtime %s ms, throttle %s %%",
                 where, trigger.describe(), elapsed, pct,
                 (ram_counter(reply, "transferred") or 0) >> 20,
                 (ram_counter(reply, "remaining") or 0) >> 20,
                 ram_counter(reply, "dirty-sync-count"), reply.get("expected-downtime"),
                 reply.get("cpu-throttle-percentage", 0))
        stats = vm.cancel_migration(wait=True, timeout=30)
        samples.append(MigrationSample.from_query(
            int((time.monotonic() - started) * 1000), vm.query_migrate()))
        if stats.status != "cancelled":
            raise TestFail(f"{where}: migrate_cancel at {pct:.1f} % of RAM left the "
                           f"migration {stats.status!r}, expected 'cancelled'")
        vm.last_migration = dataclasses.replace(stats, samples=tuple(samples))
        self.outcomes[mig_data.mig_id] = (f"cancelled {trigger.describe()}: at {elapsed:.1f} s, "
                                          f"{pct:.1f} % of RAM")
        log.info("%s: migration cancelled at %.1f %% of RAM (QEMU status %s)",
                 where, pct, stats.status)

    def check_vms_src(self, mig_data: MigrationData) -> None:
        if not self.is_aborted_kind(mig_data):
            super().check_vms_src(mig_data)
            return
        outcome = self.outcomes.get(mig_data.mig_id, "the aborted migration")
        for vm in mig_data.vms:
            where = f"{vm.name} on {self.hostid} after {mig_data.mig_id} to {mig_data.dst}"
            status = vm.query_status() if vm.is_alive() else "gone"
            if status != "running":
                raise TestFail(f"{where} ({outcome}): source guest is {status!r}, "
                               f"expected 'running'\n{vm.log_tail()}")
            if not self.memdirty_mib:
                log.info("%s: source guest still running", where)
                continue
            session = self._console(vm.name)
            try:
                result = MemoryDirtier(session).check()
            except GuestCheckError as err:
                raise TestFail(f"{where} ({outcome}): source guest memory CORRUPTED: "
                               f"{err}") from err
            log.info("%s: source guest still running, memory intact (%d pages checked)",
                     where, result.pages)
            if mig_data.params.get("last_round") != "yes":
                MemoryDirtier(session).start(self.memdirty_mib, tcg_workaround=self.tlb_churn)

    # -- destination -----------------------------------------------------------

    def wait_vms_dest(self, mig_data: MigrationData) -> None:
        if not self.is_aborted_kind(mig_data):
            super().wait_vms_dest(mig_data)
            return
        timeout = mig_data.params.get_float("cancel_incoming_timeout", 30.0)
        strict = mig_data.params.get_bool("cancel_incoming_must_end", True)
        for vm in mig_data.vms:
            where = f"{vm.name} on {self.hostid} ({mig_data.mig_id} from {mig_data.src})"
            status = vm.wait_for_migration_incoming(timeout=timeout, check=False)
            if status == "completed":
                self.incoming_completed(vm, mig_data, where)
                continue
            alive = vm.is_alive()
            tail = vm.log_tail().strip().splitlines()[-2:]
            self.env.unregister_vm(vm.name)
            vm.destroy(gracefully=False)
            if vm.is_alive():
                raise TestFail(f"{where}: the incoming QEMU survived destroy()")
            if status == "failed":
                log.info("%s: incoming migration failed as expected (QEMU %s: %s); "
                         "destination QEMU destroyed", where,
                         "still up" if alive else "exited", " | ".join(tail))
            elif strict:
                raise TestFail(f"{where}: the incoming side was still {status!r} "
                               f"{timeout:.0f} s after the source aborted the migration")
            else:
                log.info("%s: incoming side still %r %.0f s after the source aborted "
                         "(no FIN reached it yet); destination QEMU destroyed",
                         where, status, timeout)

    def incoming_completed(self, vm: VM, mig_data: MigrationData, where: str) -> None:
        """The destination loaded a stream its source aborted: a FAIL here."""
        raise TestFail(f"{where}: the incoming migration completed and the guest "
                       f"runs here, but the source aborted it")

    def check_vms_dst(self, mig_data: MigrationData) -> None:
        if not self.is_aborted_kind(mig_data):
            super().check_vms_dst(mig_data)


__all__ = ["CancelMigration", "CancelTrigger", "POLL_INTERVAL", "ram_progress_pct"]
