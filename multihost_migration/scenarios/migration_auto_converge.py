"""Auto-converge makes a migration converge that otherwise does not, and its
CPU throttle steps as configured.

The guest runs the memory dirtier over `memdirty_mib` (64) MiB: every page is
rewritten many times per second, far faster than `ac_bandwidth` (64 MiB/s)
can send them, so each dirty-sync pass finds the whole working set dirty
again and the expected downtime stays ~1 s, above downtime-limit (300 ms).

* mig1, auto-converge off: still `active` after `ac_no_converge_s` (8) s
  with >= `ac_min_passes` (3) dirty-sync passes -> the source cancels it;
  the source guest runs on with its memory intact, the incoming QEMU ends and
  is destroyed (machinery of _cancel.py).
* mig2, auto-converge on, cpu-throttle-initial / cpu-throttle-increment
  (`ac_throttle_initial` 60, `ac_throttle_increment` 20): must complete within
  `mig_timeout`; the cpu-throttle-percentage sampled (~5/s) on the source
  must climb the ladder initial, initial + increment, ... capped at
  max-cpu-throttle (99): first value = initial, every change one
  rung up, at least two rungs (so the increment is seen).  QEMU raises the
  throttle at most every second dirty-sync check (>= 2 s apart), so 5
  samples/s cannot miss a rung.  The destination verifies memory and disk.

Throttling under TCG (QEMU 7.2): the throttle puts the vCPU thread to sleep
(p / (1 - p) x 10 ms after every 10 ms of run time), which works for TCG as
for KVM.  It is checked here, not assumed: with `heartbeat = yes` the guest
writes a heartbeat every 10 ms; a sleeping vCPU writes none, so the share of
time the heartbeat stands still ("stalled fraction": the sum of every gap
beyond one interval, over the window) follows the throttle.  Each sleep shows
as one gap of which one 10 ms interval is not counted, so a throttle p gives
an expected stalled fraction of 2p - 1 (0.2 at 60 %, 0.6 at 80 %); every rung
but the last (which ends at the switchover) that lasted >= 1 s must reach
STALL_FACTOR (2/3) of that.  Measured on the lab: 0.42-0.58 at 60 %,
0.62-0.77 at 80 %; unthrottled while migrating 0.03 on a quiet host, up to
0.43 with the other helpers' load (noise only adds stalls: it cannot make the
bound fail, but on a loaded host it can hide a throttle that does nothing).

Known QEMU 7.2 defect under TCG: a migration that completes while the vCPU
is throttled loses guest writes.  Measured here (localhost migrations, the
destination started with -S, guest RAM dumped with pmemsave on both sides
after completion): with auto-converge 2 of 4 migrations left 13 and 1639
pages different; without the throttle (same dirtier, 4 or ~15 passes) 0 of
7.  The destination guest kernel then often dies (stack-protector panic,
NULL dereference in the dirtier's kernel stack: 6 of 25 throttled runs) and
reboots.
Hence `ac_dst_memory_check = auto`: under accel=tcg, between QEMU versions
where the TCG lost writes were seen (scenarios/_defects.py: 7.2), the
memory check after the auto-converge migration is run and a mismatch is
reported as this known defect with the verdict WARN (passed, with the
evidence as its reason), not failed; elsewhere (KVM, a 10.0 pair) it fails.  The disk pattern is always
verified, and the source-side memory check after mig1 is always strict.
(A guest without global pages, -cpu qemu64,-pge, does not help: 1 crash in
6 runs.)

Measured on the lab: mig1 still active after 8 s with 9 passes, expected
downtime ~1000 ms; mig2 60 % at 3.6 s, 80 % at 6.7 s, 99 % at 10.0 s,
converged at 10.9 s, downtime ~25 ms.  The whole run takes ~45 s.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional, Sequence

from multihost_migration.errors import ConfigError, GuestError
from multihost_migration.guest.checks import (DiskPattern, HeartbeatRecord, MemoryDirtier,
                                              read_heartbeat_log)
from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import MigrationSample
from multihost_migration.scenarios._cancel import CancelMigration, CancelTrigger
from multihost_migration.scenarios._defects import tcg_lost_writes_possible
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

#: QEMU's default max-cpu-throttle (the QMP name in 7.2).
DEFAULT_THROTTLE_MAX = 99
#: A rung's heartbeat stalled fraction must be at least this x its expected
#: value (2p - 1, see the module docstring).
STALL_FACTOR = 2 / 3
#: Rungs shorter than this (ms) are not measured.
MIN_RUNG_MS = 1000


def throttle_ladder(initial: int, increment: int, maximum: int = DEFAULT_THROTTLE_MAX
                    ) -> list[int]:
    """The throttle values QEMU goes through: initial, +increment, ..., max."""
    if not 0 < initial <= maximum or increment <= 0:
        raise ValueError(f"bad throttle settings: initial {initial}, increment "
                         f"{increment}, max {maximum}")
    ladder = [initial]
    while ladder[-1] < maximum:
        ladder.append(min(ladder[-1] + increment, maximum))
    return ladder


def throttle_steps(samples: Sequence[MigrationSample]) -> list[tuple[int, int]]:
    """(t_ms, pct) each time the sampled cpu-throttle-percentage changed to a
    new non-zero value, in time order."""
    steps: list[tuple[int, int]] = []
    for sample in sorted(samples, key=lambda s: s.t_ms):
        if sample.throttle and (not steps or steps[-1][1] != sample.throttle):
            steps.append((sample.t_ms, sample.throttle))
    return steps


def ladder_problem(values: Sequence[int], initial: int, increment: int,
                   maximum: int = DEFAULT_THROTTLE_MAX) -> Optional[str]:
    """Why the observed throttle values do not climb the configured ladder,
    or None when they do (first = initial, each change one rung up, >= 2)."""
    ladder = throttle_ladder(initial, increment, maximum)
    expected = " -> ".join(str(v) for v in ladder)
    if not values:
        return f"the CPU throttle never engaged (expected {expected} %)"
    if values[0] != initial:
        return (f"the throttle started at {values[0]} %, expected cpu-throttle-initial "
                f"{initial} % (ladder {expected} %)")
    for before, after in zip(values, values[1:]):
        if before not in ladder or ladder.index(before) + 1 >= len(ladder) \
                or ladder[ladder.index(before) + 1] != after:
            return (f"the throttle went {before} -> {after} %, expected one step of "
                    f"cpu-throttle-increment {increment} % (ladder {expected} %)")
    if len(values) < 2:
        return (f"the throttle stayed at {values[0]} %, never stepped up by "
                f"{increment} % (ladder {expected} %)")
    return None


def stalled_fraction(records: Sequence[HeartbeatRecord], start_ns: int, end_ns: int,
                     interval_ms: float = 10.0) -> Optional[float]:
    """Share of [start_ns, end_ns] during which the heartbeat stood still:
    the sum over consecutive records of (gap - interval) where positive,
    divided by the window; None with fewer than two records in it."""
    inside = sorted((r for r in records if start_ns <= r.host_ns <= end_ns),
                    key=lambda r: r.host_ns)
    if len(inside) < 2 or end_ns <= start_ns:
        return None
    stalled = sum(max(0.0, (b.host_ns - a.host_ns) / 1e6 - interval_ms)
                  for a, b in zip(inside, inside[1:]))
    return stalled / ((end_ns - start_ns) / 1e6)


def expected_stall(pct: int) -> float:
    """Stalled fraction expected at throttle `pct` (one interval per sleep
    is not counted): 2p - 1, 0 at 50 % and below."""
    return max(0.0, 2 * pct / 100 - 1)


def rung_windows(steps: Sequence[tuple[int, int]], min_ms: int = MIN_RUNG_MS
                 ) -> list[tuple[int, int, int]]:
    """(pct, from_ms, to_ms) of every rung but the last that lasted min_ms."""
    return [(pct, t, t_next) for (t, pct), (t_next, _) in zip(steps, steps[1:])
            if t_next - t >= min_ms]


class AutoConvergeMigration(CancelMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.initial = params.get_int("ac_throttle_initial", 60)
        self.increment = params.get_int("ac_throttle_increment", 20)
        self.maximum = params.get_int("ac_throttle_max", DEFAULT_THROTTLE_MAX)
        self.window_ns: dict[str, tuple[int, int]] = {}
        check = str(params.get("ac_dst_memory_check", "auto"))
        if check not in ("auto", "strict", "report"):
            raise ConfigError(f"ac_dst_memory_check = {check!r}: auto, strict or report")
        self.report_only = check == "report" or (   # where the defect was seen
            check == "auto" and tcg_lost_writes_possible(params))

    def completed_early(self, where: str, elapsed: float, trigger: CancelTrigger) -> str:
        return (f"{where}: converged WITHOUT auto-converge after {elapsed:.1f} s "
                f"(expected to be still active {trigger.describe()}): the guest does not "
                f"dirty memory faster than max-bandwidth; raise memdirty_mib or lower "
                f"ac_bandwidth")

    def _common(self) -> dict[str, Any]:
        return {"migrate_parameter_max-bandwidth": self.params.get("ac_bandwidth", "64M"),
                "migrate_parameter_downtime-limit": self.params.get("ac_downtime_limit", "100")}

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        start = time.time_ns()
        try:
            super().migrate_vms_src(mig_data)
        finally:
            self.window_ns[mig_data.mig_id] = (start, time.time_ns())

    def _heartbeat(self, mig_data: MigrationData, vm_name: str) -> list[HeartbeatRecord]:
        vm = next(v for v in mig_data.vms if v.name == vm_name)
        return read_heartbeat_log(vm.heartbeat_log_path) if vm.heartbeat is not None else []

    def check_vms_src(self, mig_data: MigrationData) -> None:
        if "auto-converge" in str(mig_data.params.get("migration_capabilities", "")).split():
            self._check_throttle(mig_data)
        else:
            start, end = self.window_ns.get(mig_data.mig_id, (0, 0))
            for vm in mig_data.vms:
                frac = stalled_fraction(self._heartbeat(mig_data, vm.name), start, end)
                log.info("%s %s without auto-converge: heartbeat stalled fraction on %s "
                         "while migrating %s", vm.name, mig_data.mig_id, self.hostid,
                         f"{frac:.2f}" if frac is not None else "n/a (no heartbeat)")
        super().check_vms_src(mig_data)

    def _check_throttle(self, mig_data: MigrationData) -> None:
        start_ns = self.window_ns.get(mig_data.mig_id, (0, 0))[0]
        for vm in mig_data.vms:
            stats = vm.last_migration
            where = f"{vm.name} {mig_data.mig_id} {mig_data.src} -> {mig_data.dst}"
            if stats is None:
                raise TestFail(f"{where}: no migration statistics on the source")
            steps = throttle_steps(stats.samples)
            shown = ", ".join(f"{pct} % at {t / 1000:.1f} s" for t, pct in steps) or "none"
            problem = ladder_problem([pct for _, pct in steps], self.initial,
                                     self.increment, self.maximum)
            if problem is not None:
                raise TestFail(f"{where} with auto-converge: {problem}; sampled throttle: "
                               f"{shown} ({len(stats.samples)} samples, total "
                               f"{stats.total_time_ms} ms)")
            log.info("%s: auto-converge throttle climbed as configured (initial %d, "
                     "increment %d, max %d): %s; converged after %s ms in %s passes, "
                     "downtime %s ms", where, self.initial, self.increment, self.maximum,
                     shown, stats.total_time_ms, stats.passes, stats.downtime_ms)
            records = self._heartbeat(mig_data, vm.name)
            if not records:
                log.info("%s: no heartbeat recorded (heartbeat = no): the vCPU sleep is "
                         "not measured", where)
                continue
            self._check_vcpu_sleeps(where, records, start_ns, steps)

    def _check_vcpu_sleeps(self, where: str, records: Sequence[HeartbeatRecord],
                           start_ns: int, steps: Sequence[tuple[int, int]]) -> None:
        """The heartbeat stands still for about the throttle's share of time."""
        ms = 1_000_000
        before = stalled_fraction(records, start_ns, start_ns + steps[0][0] * ms)
        unthrottled = f"{before:.2f}" if before is not None else "n/a"
        measured = []
        for pct, t_from, t_to in rung_windows(steps):
            frac = stalled_fraction(records, start_ns + t_from * ms, start_ns + t_to * ms)
            span = f"{t_from / 1000:.1f}-{t_to / 1000:.1f} s"
            if frac is None:
                raise TestFail(f"{where}: no guest heartbeat while throttled at {pct} % "
                               f"({span}); heartbeat stalled fraction unthrottled "
                               f"{unthrottled}")
            required = STALL_FACTOR * expected_stall(pct)
            measured.append(f"{pct} %: {frac:.2f} (>= {required:.2f})")
            if frac < required:
                raise TestFail(f"{where}: throttled at {pct} % ({span}) but the guest "
                               f"heartbeat stood still only {frac:.2f} of that time "
                               f"(expected {expected_stall(pct):.2f}, required >= "
                               f"{required:.2f}; unthrottled {unthrottled}): the "
                               f"throttle does not slow the vCPU")
        if not measured:
            raise TestFail(f"{where}: no throttle rung but the last lasted "
                           f"{MIN_RUNG_MS} ms, the vCPU sleep cannot be measured")
        log.info("%s: heartbeat stalled fraction unthrottled %s, throttled %s: the "
                 "throttled vCPU really sleeps", where, unthrottled, ", ".join(measured))

    def check_work(self, mig_data: MigrationData) -> None:
        """Destination after the auto-converge migration: memory and disk.
        Under TCG (`ac_dst_memory_check = auto`) a memory mismatch is the known
        QEMU 7.2 defect (module docstring): WARN, not FAIL; the
        disk pattern is always verified."""
        if not self.report_only:
            super().check_work(mig_data)
            return
        for name in mig_data.vms_name:
            where = f"{name} after {mig_data.mig_id} on {self.hostid}"
            if self.memdirty_mib:
                try:
                    result = MemoryDirtier(self._console(name)).check()
                    log.info("%s: memory OK, %d pages checked", where, result.pages)
                except GuestError as err:
                    self.warn(f"{where}: KNOWN QEMU 7.2 TCG DEFECT (auto-converge throttle "
                              f"loses guest writes; not failed under TCG, "
                              f"ac_dst_memory_check = strict to fail): memory check: "
                              f"{err}{self._guest_crash(mig_data, name)}")
            if self.disk_mib:
                DiskPattern(self._console(name)).verify(self.disk_seed, self.disk_mib)
                log.info("%s: disk pattern OK", where)

    def _guest_crash(self, mig_data: MigrationData, name: str) -> str:
        """The destination guest kernel's crash lines, if its console shows one."""
        vm = next((v for v in mig_data.vms if v.name == name), None)
        try:
            text = vm.serial_log_path.read_text(errors="replace") if vm else ""
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines()
                 if any(key in line for key in ("BUG:", "Oops", "Kernel panic"))]
        rebooted = " The guest rebooted." if "SeaBIOS" in text else ""
        return (f"\ndestination guest kernel: {' | '.join(lines[:3])}.{rebooted}"
                if lines else "")

    def migration_scenario(self) -> None:
        src, dst = self.hosts[0], self.hosts[1]
        no_ac = dict(self._common(), **{
            "cancel_trigger_after_s": self.params.get("ac_no_converge_s", "8"),
            "cancel_trigger_min_passes": self.params.get("ac_min_passes", "3"),
            "last_round": "no"})
        self.migrate_wait(self.vms, src, dst, self.start_work, None, params_append=no_ac)
        with_ac = dict(self._common(), **{
            "migration_capabilities": "auto-converge",
            "migrate_parameter_cpu-throttle-initial": str(self.initial),
            "migrate_parameter_cpu-throttle-increment": str(self.increment),
            "migrate_parameter_max-cpu-throttle": str(self.maximum),
            "last_round": "yes"})
        self.migrate_wait(self.vms, src, dst, None, self.check_work, params_append=with_ac)


def run(test: Any, params: Params, env: Env) -> None:
    AutoConvergeMigration(test, params, env).run()
