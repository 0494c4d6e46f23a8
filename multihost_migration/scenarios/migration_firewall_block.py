"""The destination's firewall drops the migration stream mid-way.

One migration, first host -> second host, slowed down by max-bandwidth
(16 MiB/s: ~4 s for this guest) so it is in flight when the block comes.
The destination watches its incoming QEMU; `firewall_block_after_s` (1) s
after the stream went `active` it adds an nftables table of its own
(`inet mhm_block_<job id>_<vm>`, in its network namespace on the lab) that
DROPs TCP to and from the migration port (drop, not reject: TCP retransmits
and the stream resumes when the rule goes), keeps it `firewall_block_s`
seconds, then deletes the table (also in a finally and at cleanup).  Both
the incoming status when the block started and when it ended are logged.

* `long` (block 10 s > `mig_stall_timeout` 5 s, `firewall_expect = aborted`):
  the source's stall watchdog (MultihostMigration) cancels the migration
  that moves no byte; the test PASSES with that outcome logged, once the
  source guest is `running` with its memory intact (memory dirtier).  The
  destination's incoming QEMU is destroyed (it may not even have noticed:
  the FIN is dropped too).
* `short` (block 2 s < `mig_stall_timeout` 8 s, `firewall_expect =
  completed`): the migration resumes and completes; the source shows that
  its stream really stood still (longest stall in the sampled `transferred`
  >= half the block; a TCP retransmission adds ~1 s to it), the destination
  that the block hit an `active` migration, and it verifies memory and disk.

A block that came too late (the incoming side not `active` any more) is a
FAIL on the destination: the scenario would not have tested anything.
Margins (2 shared cores, TCG): the stall watchdog fires ~stall_timeout +
0.5 s after the block; a 10 s block leaves ~4 s of margin; a 2 s block
stalled the stream 2.9 s on the lab, far below 8 s.  The guest dirties only
4 MiB so the migration converges as soon as the stream resumes (with 16 MiB
at 16 MiB/s it hovered at the downtime limit for ~18 s).  Run time: long
~36 s, short ~25-33 s.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional, Sequence

from multihost_migration.errors import ConfigError, QMPError, VMError
from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import MigrationSample
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._cancel import CancelMigration
from multihost_migration.scenarios._portblock import PortBlock, table_name
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

#: Seconds between polls of the incoming QEMU's status.
POLL = 0.05
def longest_stall_ms(samples: Sequence[MigrationSample]) -> int:
    """Longest time (ms) the sampled `transferred` counter stood still while
    the migration was active."""
    active = [s for s in sorted(samples, key=lambda s: s.t_ms)
              if s.status == "active" and s.transferred is not None]
    longest, since = 0, None
    for before, after in zip(active, active[1:]):
        if after.transferred == before.transferred:
            since = before.t_ms if since is None else since
            longest = max(longest, after.t_ms - since)
        else:
            since = None
    return longest


def _incoming_status(vm: VM) -> str:
    try:
        return str(vm.query_migrate().get("status", "none"))
    except (QMPError, VMError):
        return "gone"


class MidMigrationBlock(threading.Thread):
    """Destination: blocks the port once the incoming stream has been
    active `after_s` s, for `duration_s` s; stop() ends it early."""

    def __init__(self, vm: VM, block: PortBlock, after_s: float, duration_s: float,
                 timeout: float) -> None:
        super().__init__(name=f"block-{vm.name}-{block.port}", daemon=True)
        self.vm = vm
        self.block = block
        self.after_s = after_s
        self.duration_s = duration_s
        self.timeout = timeout
        self.status_at_block: Optional[str] = None
        self.status_at_unblock: Optional[str] = None
        self.blocked_s = 0.0
        self.error: Optional[BaseException] = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # noqa: B036 - reported by the scenario
            log.error("%s: %s", self.name, err)
            self.error = err

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while _incoming_status(self.vm) != "active":
            if self._stop_event.wait(POLL) or time.monotonic() >= deadline:
                self.status_at_block = _incoming_status(self.vm)
                return
        if self._stop_event.wait(self.after_s):
            return
        self.status_at_block = _incoming_status(self.vm)
        if self.status_at_block != "active":
            return
        start = time.monotonic()
        with self.block:
            log.info("%s: DROPping TCP port %d (nft table inet %s) for %.1f s; incoming "
                     "migration %s", self.vm.name, self.block.port, self.block.table,
                     self.duration_s, self.status_at_block)
            try:
                self._stop_event.wait(self.duration_s)
            finally:
                self.blocked_s = time.monotonic() - start
                self.status_at_unblock = _incoming_status(self.vm)
        log.info("%s: port %d open again after %.1f s (table removed); incoming migration "
                 "%s", self.vm.name, self.block.port, self.blocked_s, self.status_at_unblock)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)


class FirewallBlockMigration(CancelMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.expect = str(params.get("firewall_expect", "completed"))
        if self.expect not in ("completed", "aborted"):
            raise ConfigError(f"firewall_expect = {self.expect!r}: completed or aborted")
        self.after_s = params.get_float("firewall_block_after_s", 1.0)
        self.block_s = params.get_float("firewall_block_s", 2.0)
        self.stall_timeout = params.get_float("mig_stall_timeout", 60.0)
        self.blockers: dict[str, list[MidMigrationBlock]] = {}   # by mig_id

    # -- destination ------------------------------------------------------------

    def migrate_vms_dest(self, mig_data: MigrationData) -> dict[str, int]:
        ports = super().migrate_vms_dest(mig_data)
        for vm in mig_data.vms:
            block = PortBlock(table_name(f"{self.job_id}_{vm.name}"), ports[vm.name])
            blocker = MidMigrationBlock(vm, block, self.after_s, self.block_s,
                                        self.mig_timeout)
            self.blockers.setdefault(mig_data.mig_id, []).append(blocker)
            blocker.start()
        return ports

    def wait_vms_dest(self, mig_data: MigrationData) -> None:
        for blocker in self.blockers.get(mig_data.mig_id, []):
            blocker.join(self.after_s + self.block_s + self.mig_timeout)
            where = (f"{blocker.vm.name} on {self.hostid} ({mig_data.mig_id} from "
                     f"{mig_data.src}, port {blocker.block.port})")
            if blocker.error is not None:
                raise TestFail(f"{where}: the firewall block failed: {blocker.error}")
            if blocker.status_at_block != "active":
                raise TestFail(f"{where}: the block came too late: the incoming migration "
                               f"was {blocker.status_at_block!r}, not 'active', "
                               f"{self.after_s:g} s after it started; slow it down "
                               f"(max-bandwidth)")
            if self.expect == "completed" and blocker.status_at_unblock != "active":
                raise TestFail(f"{where}: the incoming migration was "
                               f"{blocker.status_at_unblock!r} when the {self.block_s:g} s "
                               f"block ended, expected still 'active'")
            log.info("%s: the %.1f s block hit the migration while active (status %s "
                     "after it)", where, blocker.blocked_s, blocker.status_at_unblock)
        super().wait_vms_dest(mig_data)

    # -- source -------------------------------------------------------------------

    def unexpected_completion(self, mig_data: MigrationData) -> str:
        return (f"{mig_data.mig_id} {mig_data.src} -> {mig_data.dst}: the migration "
                f"completed although {mig_data.dst} dropped its stream for "
                f"{self.block_s:g} s; expected the stall watchdog (mig_stall_timeout "
                f"{self.stall_timeout:g} s) to cancel it")

    def check_vms_src(self, mig_data: MigrationData) -> None:
        if self.expect == "completed":
            for vm in mig_data.vms:
                samples = vm.last_migration.samples if vm.last_migration else ()
                stall = longest_stall_ms(samples)
                where = f"{vm.name} {mig_data.mig_id} {mig_data.src} -> {mig_data.dst}"
                if stall < self.block_s * 1000 / 2:
                    raise TestFail(f"{where}: the stream never stood still longer than "
                                   f"{stall} ms ({len(samples)} samples), expected about "
                                   f"the {self.block_s:g} s block: it did not hit the "
                                   f"migration")
                log.info("%s: completed after a %g s block: the stream stood still %d ms "
                         "(stall watchdog at %g s did not fire)", where, self.block_s,
                         stall, self.stall_timeout)
        else:
            log.info("%s %s -> %s: outcome of the %g s block: %s", mig_data.mig_id,
                     mig_data.src, mig_data.dst, self.block_s,
                     self.outcomes.get(mig_data.mig_id, "?"))
        super().check_vms_src(mig_data)

    # -- the scenario -------------------------------------------------------------

    def migration_scenario(self) -> None:
        src, dst = self.hosts[0], self.hosts[1]
        aborted = self.expect == "aborted"
        self.migrate_wait(self.vms, src, dst, self.start_work,
                          None if aborted else self.check_work,
                          params_append={"expect_failure": "yes" if aborted else "no",
                                         "cancel_incoming_must_end": "no",
                                         "cancel_incoming_timeout": "5",
                                         "last_round": "yes"})

    def cleanup(self) -> None:
        """Blocks end (and their tables go) before anything else."""
        try:
            for blocker in (b for group in self.blockers.values() for b in group):
                blocker.stop()
                if blocker.block.added:
                    blocker.block.remove()
        finally:
            super().cleanup()


def run(test: Any, params: Params, env: Env) -> None:
    FirewallBlockMigration(test, params, env).run()
