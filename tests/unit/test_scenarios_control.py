"""The checkers and hooks of the migration-control scenarios (cancel,
firewall_block, downtime_and_speed, auto_converge), fed good and bad
measurements and fake VMs (no QEMU): each check fails on bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import pytest

from multihost_migration.errors import ConfigError, GuestCheckError, LabError
from multihost_migration.guest.checks import HeartbeatRecord
from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import MigrationSample
from multihost_migration.scenarios.migration_auto_converge import (
    AutoConvergeMigration, expected_stall, ladder_problem, rung_windows, stalled_fraction,
    throttle_ladder, throttle_steps)
from multihost_migration.scenarios.migration_cancel import (CancelMigration, CancelTrigger,
                                                            ram_progress_pct)
from multihost_migration.scenarios.migration_downtime_speed import (
    MIB, Limits, Measured, active_throughput, problems, summary, switchover_gap_ms)
from multihost_migration.scenarios.migration_firewall_block import (
    FirewallBlockMigration, PortBlock, longest_stall_ms, table_name)
from multihost_migration.verdicts import TestFail
from tests.unit.fakes import FakeShell

MS = 1_000_000


def reply(status: str = "active", total: int = 1000, remaining: int = 600,
          passes: int = 1) -> dict[str, object]:
    return {"status": status, "ram": {"total": total, "remaining": remaining,
                                      "dirty-sync-count": passes}}


# -- cancel -------------------------------------------------------------------------


def test_ram_progress() -> None:
    assert ram_progress_pct(reply(remaining=600)) == 40.0
    assert ram_progress_pct({"status": "setup"}) is None
    assert ram_progress_pct(reply(total=0)) is None


def test_cancel_trigger_at_pct() -> None:
    trigger = CancelTrigger.from_params(Params({"cancel_trigger_pct": "30"}))
    assert trigger is not None and "30 % of RAM" in trigger.describe()
    assert not trigger.reached(reply(remaining=710), 1.0)       # 29 %
    assert trigger.reached(reply(remaining=690), 1.0)           # 31 %
    assert not trigger.reached(reply("setup", remaining=0), 1.0)
    assert not trigger.reached(reply("completed", remaining=0), 1.0)


def test_cancel_trigger_after_time_and_passes() -> None:
    trigger = CancelTrigger.from_params(Params({"cancel_trigger_after_s": "8",
                                                "cancel_trigger_min_passes": "3"}))
    assert trigger is not None
    assert not trigger.reached(reply(passes=9), 7.9)
    assert not trigger.reached(reply(passes=2), 8.5)   # not enough passes yet
    assert trigger.reached(reply(passes=3), 8.5)


def test_no_trigger_without_params() -> None:
    assert CancelTrigger.from_params(Params({"cancel_trigger_pct": ""})) is None
    assert CancelTrigger.from_params(Params({})) is None


# -- auto_converge ------------------------------------------------------------------


def test_throttle_ladder() -> None:
    assert throttle_ladder(60, 20) == [60, 80, 99]
    assert throttle_ladder(20, 10, 50) == [20, 30, 40, 50]
    with pytest.raises(ValueError):
        throttle_ladder(60, 0)


def samples(*throttles: Optional[int], step_ms: int = 200) -> list[MigrationSample]:
    return [MigrationSample(t_ms=i * step_ms, status="active", throttle=t)
            for i, t in enumerate(throttles)]


def test_throttle_steps_keep_changes_only() -> None:
    seq = samples(None, None, 60, 60, 60, 80, 80, 99, None)
    assert throttle_steps(seq) == [(400, 60), (1000, 80), (1400, 99)]


def test_ladder_as_configured_passes() -> None:
    assert ladder_problem([60, 80, 99], 60, 20) is None
    assert ladder_problem([60, 80], 60, 20) is None     # converged before 99


@pytest.mark.parametrize("values, words", [
    ([], "never engaged"),
    ([20, 40, 60], "started at 20 %, expected cpu-throttle-initial 60"),
    ([60, 99], "went 60 -> 99 %"),                       # a rung skipped
    ([60, 70, 80], "went 60 -> 70 %"),                   # wrong increment
    ([60, 80, 60], "went 80 -> 60 %"),                   # went down
    ([60], "never stepped up by 20"),
])
def test_ladder_problems_name_what_went_wrong(values: list[int], words: str) -> None:
    problem = ladder_problem(values, 60, 20)
    assert problem is not None and words in problem, problem


def heartbeats(start_ms: int, end_ms: int, run_ms: int = 10, sleep_ms: int = 0,
               seq0: int = 0) -> list[HeartbeatRecord]:
    """A heartbeat every 10 ms while the vCPU runs; during each `sleep_ms` the
    guest writes nothing, then catches up at once (absolute schedule)."""
    out, t, seq = [], start_ms, seq0
    while t < end_ms:
        out.append(HeartbeatRecord(t * MS, seq, t * MS))
        seq += 1
        t += 10
        if sleep_ms and (t - start_ms) % run_ms == 0:
            t += sleep_ms
            for _ in range(sleep_ms // 10):          # the backlog, written at once
                out.append(HeartbeatRecord(t * MS, seq, t * MS))
                seq += 1
    return out


def test_stalled_fraction_follows_the_throttle() -> None:
    free = stalled_fraction(heartbeats(0, 2000), 0, 2000 * MS)
    assert free is not None and free < 0.01
    # 80 %: 10 ms run, 40 ms asleep
    throttled = stalled_fraction(heartbeats(0, 2000, 10, 40), 0, 2000 * MS)
    assert throttled is not None and 0.75 <= throttled <= 0.85
    assert stalled_fraction([], 0, 10 * MS) is None


def test_expected_stall() -> None:
    assert expected_stall(80) == pytest.approx(0.6)
    assert expected_stall(99) == pytest.approx(0.98)
    assert expected_stall(40) == 0.0
    # the synthetic 80 % guest above comes out at its expected value or more
    measured = stalled_fraction(heartbeats(0, 2000, 10, 40), 0, 2000 * MS)
    assert measured is not None and measured >= expected_stall(80)


def test_rung_windows_skip_the_last_and_short_rungs() -> None:
    steps = [(3000, 60), (3500, 80), (6000, 99)]
    assert rung_windows(steps) == [(80, 3500, 6000)]
    assert rung_windows([(1000, 60)]) == []


# -- firewall_block -----------------------------------------------------------------


class FakeNft:
    """Records nft calls; keeps the set of tables like the kernel would."""

    def __init__(self, fail_add: bool = False, stuck: bool = False) -> None:
        self.tables: set[str] = set()
        self.calls: list[list[str]] = []
        self.scripts: list[str] = []
        self.fail_add = fail_add
        self.stuck = stuck

    def __call__(self, argv: Sequence[str], stdin: Optional[str]) -> tuple[int, str]:
        self.calls.append(list(argv))
        if argv[1] == "-f":
            assert stdin is not None
            self.scripts.append(stdin)
            name = stdin.split()[2]
            self.tables.add(name)
            return (1, "Error: syntax") if self.fail_add else (0, "")
        name = argv[-1]
        if argv[1] == "delete":
            if name in self.tables and not self.stuck:
                self.tables.discard(name)
                return 0, ""
            return 1, "No such file or directory"
        return (0, "") if name in self.tables else (1, "No such file or directory")


def test_table_name_is_unique_and_valid() -> None:
    name = table_name("firewall_block.long.tcp.JeOS.mhm-1a2b3c4d_vm1")
    assert name == "mhm_block_firewall_block_long_tcp_JeOS_mhm_1a2b3c4d_vm1"


def test_port_block_drops_both_directions_and_is_removed() -> None:
    nft = FakeNft()
    with PortBlock("mhm_block_x", 4444, runner=nft, nft="nft") as block:
        assert nft.tables == {"mhm_block_x"} and block.added
        script = nft.scripts[0]
        assert script.count("drop") == 4 and "reject" not in script
        for rule in ("tcp dport 4444 drop", "tcp sport 4444 drop"):
            assert script.count(rule) == 2
        assert "hook input" in script and "hook output" in script
    assert nft.tables == set() and not block.added


def test_port_block_removed_when_the_body_raises() -> None:
    nft = FakeNft()
    with pytest.raises(RuntimeError):
        with PortBlock("mhm_block_x", 4444, runner=nft, nft="nft"):
            raise RuntimeError("boom")
    assert nft.tables == set()


def test_port_block_failures_are_reported() -> None:
    nft = FakeNft(fail_add=True)
    with pytest.raises(LabError, match="could not add table inet mhm_block_x"):
        PortBlock("mhm_block_x", 4444, runner=nft, nft="nft").add()
    assert nft.tables == set()            # a half-applied script is removed
    stuck = FakeNft(stuck=True)
    block = PortBlock("mhm_block_x", 4444, runner=stuck, nft="nft")
    with pytest.raises(LabError, match="could not be removed"):
        with block:
            pass
    with pytest.raises(ConfigError):
        PortBlock("mhm_block_x", 0, runner=nft)
    with pytest.raises(ConfigError):
        PortBlock("bad name; flush ruleset", 4444, runner=nft)


def test_longest_stall() -> None:
    seq = [MigrationSample(t * 200, "active", transferred=b) for t, b in
           enumerate([10, 20, 30, 30, 30, 30, 30, 40, 50])]
    assert longest_stall_ms(seq) == 800
    assert longest_stall_ms(seq[:3]) == 0
    assert longest_stall_ms([]) == 0


# -- downtime_and_speed -----------------------------------------------------------


LIMITS = Limits(downtime_limit_ms=300, max_bandwidth=32 * MIB, downtime_margin_ms=500,
                guest_downtime_margin_ms=1000, bandwidth_margin_pct=15)


def test_active_throughput() -> None:
    seq = [MigrationSample(0, "setup")] + [
        MigrationSample(100 + i * 200, "active", transferred=i * 6 * MIB) for i in range(11)
    ] + [MigrationSample(2400, "completed", transferred=200 * MIB)]
    assert active_throughput(seq) == pytest.approx(30 * MIB)
    assert active_throughput(seq[:2]) is None          # too short to say


def test_switchover_gap() -> None:
    src = heartbeats(0, 1000)                                  # seq 0..99
    dst = heartbeats(1250, 1500, seq0=100)
    gap, last, first = switchover_gap_ms(src, dst)
    assert (round(gap), last, first) == (260, 99, 100)
    # a stall on the source before the switchover does not count
    noisy = heartbeats(0, 500) + heartbeats(1400, 1900, seq0=50)
    gap, _, _ = switchover_gap_ms(noisy, heartbeats(1950, 2000, seq0=100))
    assert round(gap) == 60
    with pytest.raises(GuestCheckError, match="no record from the destination"):
        switchover_gap_ms(src, [])
    with pytest.raises(GuestCheckError, match="no source record before"):
        switchover_gap_ms(heartbeats(0, 100, seq0=500), dst)


def test_within_limits_passes() -> None:
    good = Measured(qemu_downtime_ms=45, guest_downtime_ms=250, active_bps=31.5 * MIB,
                    qemu_bps=30 * MIB)
    assert problems(good, LIMITS) == []
    text = summary(good, LIMITS)
    assert "QEMU downtime 45 ms (allowed 800)" in text
    assert "guest-observed downtime 250 ms (allowed 1300)" in text
    assert "throughput sampled 31.5 MiB/s / QEMU 30.0 MiB/s (allowed 36.8 MiB/s" in text


@pytest.mark.parametrize("measured, words", [
    (Measured(900, 250, 30 * MIB, 30 * MIB),
     "QEMU-reported downtime 900 ms > allowed 800 ms (downtime-limit 300 ms + margin 500 ms)"),
    (Measured(45, 1400, 30 * MIB, 30 * MIB),
     "guest-observed downtime 1400 ms > allowed 1300 ms"),
    (Measured(45, 250, 40 * MIB, 30 * MIB),
     "sampled active-phase throughput 40.0 MiB/s > allowed 36.8 MiB/s (max-bandwidth "
     "32.0 MiB/s + 15 %)"),
    (Measured(45, 250, 30 * MIB, 64 * MIB),
     "QEMU-reported average throughput 64.0 MiB/s > allowed 36.8 MiB/s"),
    (Measured(None, None, None, 30 * MIB), "QEMU reported no downtime"),
    (Measured(45, None, 30 * MIB, 30 * MIB), "no guest-observed downtime"),
    (Measured(45, 250, None, 30 * MIB), "no sampled active-phase throughput"),
])
def test_each_limit_breach_names_measured_and_allowed(measured: Measured, words: str) -> None:
    found = problems(measured, LIMITS)
    assert any(words in p for p in found), found


def test_impossible_margin_fails() -> None:
    """The lab's negative test: a margin that makes the limit unreachable."""
    impossible = LIMITS._replace(downtime_margin_ms=-300)
    found = problems(Measured(10, 250, 30 * MIB, 30 * MIB), impossible)
    assert found == ["QEMU-reported downtime 10 ms > allowed 0 ms (downtime-limit 300 ms "
                     "+ margin -300 ms)"]


# -- the scenarios' hooks, with fake VMs ----------------------------------------------



class FakeVM:
    def __init__(self, status: str = "running", incoming: str = "failed",
                 memcheck: str = "MEMCHECK OK pages=4096 passes=9") -> None:
        self.name = "vm1"
        self.status = status
        self.incoming = incoming
        self.alive = True
        self.destroyed = False
        self.shell = FakeShell({"mhm-memcheck": (0 if "OK" in memcheck else 1, memcheck),
                            "cat /tmp/mhm-memdirty.log": (0, "MEMDIRTY READY pages=4096")})

    def is_alive(self) -> bool:
        return self.alive

    def query_status(self) -> str:
        return self.status

    def log_tail(self) -> str:
        return "qemu-system-x86_64: load of migration failed: Input/output error\n"

    def wait_for_login(self, timeout: float = 60.0) -> FakeShell:
        return self.shell

    def wait_for_migration_incoming(self, timeout: float = 300.0, check: bool = True) -> str:
        if self.incoming == "failed":
            self.alive = False           # QEMU exits when the stream breaks
        return self.incoming

    def destroy(self, gracefully: bool = True) -> None:
        self.alive, self.destroyed = False, True


def scenario(cls: type, hostid: str, vm: FakeVM, **attrs: Any) -> Any:
    """An instance without __init__ (no sync server, no disks)."""
    obj = cls.__new__(cls)
    obj.env = Env()
    obj.env.register_vm(vm.name, vm)  # type: ignore[arg-type]
    obj.hostid, obj.outcomes, obj.login_timeout = hostid, {}, 10.0
    obj.memdirty_mib, obj.disk_mib, obj.tlb_churn = 16, 8, True
    obj.mig_timeout = 60.0
    for key, value in attrs.items():
        setattr(obj, key, value)
    return obj


def cancel_mig(hostid: str, vm: FakeVM, **params: str) -> MigrationData:
    mig = MigrationData(Params({"cancel_trigger_pct": "30", **params}), hostid, "hA", "hB",
                        ["vm1"], "mig1")
    mig.vms = [vm]  # type: ignore[list-item]
    return mig


def test_cancelled_source_intact_passes_and_dirtier_restarts() -> None:
    vm = FakeVM()
    test = scenario(CancelMigration, "hA", vm)
    test.check_vms_src(cancel_mig("hA", vm, last_round="no"))
    assert any("mhm-memcheck" in c for c in vm.shell.commands)
    assert any(c.startswith("mhm-memdirty 16 ") for c in vm.shell.commands)
    assert not vm.destroyed            # the guest stays here for the next migration


def test_cancelled_source_not_running_fails() -> None:
    vm = FakeVM(status="paused")
    with pytest.raises(TestFail, match=r"vm1 on hA after mig1 to hB .*source guest is "
                                       r"'paused', expected 'running'"):
        scenario(CancelMigration, "hA", vm).check_vms_src(cancel_mig("hA", vm))


def test_cancelled_source_memory_corrupted_fails() -> None:
    vm = FakeVM(memcheck="MEMCHECK BAD pages=4096 bad=3 first_bad_page=7")
    with pytest.raises(TestFail, match="source guest memory CORRUPTED: guest memory "
                                       "corrupted: 3 bad of 4096 pages"):
        scenario(CancelMigration, "hA", vm).check_vms_src(cancel_mig("hA", vm))


def test_cancelled_destination_is_destroyed() -> None:
    vm = FakeVM(incoming="failed")
    test = scenario(CancelMigration, "hB", vm)
    test.wait_vms_dest(cancel_mig("hB", vm))
    assert vm.destroyed and test.env.get_vm("vm1") is None


@pytest.mark.parametrize("incoming, params, words", [
    ("completed", {}, "the incoming migration completed and the guest runs here"),
    ("active", {}, "was still 'active' 30 s after the source aborted"),
])
def test_cancelled_destination_that_goes_on_fails(incoming: str, params: dict[str, str],
                                                  words: str) -> None:
    vm = FakeVM(incoming=incoming)
    with pytest.raises(TestFail, match=words):
        scenario(CancelMigration, "hB", vm).wait_vms_dest(cancel_mig("hB", vm, **params))


def test_stuck_destination_tolerated_when_asked() -> None:
    vm = FakeVM(incoming="active")
    test = scenario(CancelMigration, "hB", vm)
    test.wait_vms_dest(cancel_mig("hB", vm, cancel_incoming_must_end="no"))
    assert vm.destroyed


class FakeBlocker:
    def __init__(self, at_block: Optional[str], at_unblock: Optional[str]) -> None:
        self.vm = FakeVM()
        self.block = PortBlock("mhm_block_x", 4444, runner=FakeNft(), nft="nft")
        self.error: Optional[BaseException] = None
        self.status_at_block, self.status_at_unblock = at_block, at_unblock
        self.blocked_s = 2.0

    def join(self, timeout: Optional[float] = None) -> None:
        pass


@pytest.mark.parametrize("expect, at_block, at_unblock, words", [
    ("completed", "completed", None, "the block came too late: the incoming migration was "
                                     "'completed', not 'active'"),
    ("aborted", "setup", None, "the block came too late"),
    ("completed", "active", "completed", "was 'completed' when the 2 s block ended"),
])
def test_firewall_block_that_missed_the_migration_fails(expect: str, at_block: str,
                                                        at_unblock: Optional[str],
                                                        words: str) -> None:
    vm = FakeVM()
    test = scenario(FirewallBlockMigration, "hB", vm, expect=expect, after_s=1.0,
                    block_s=2.0, blockers={"mig1": [FakeBlocker(at_block, at_unblock)]})
    with pytest.raises(TestFail, match=words):
        test.wait_vms_dest(cancel_mig("hB", vm))


def test_throttle_that_does_not_slow_the_vcpu_fails() -> None:
    test = scenario(AutoConvergeMigration, "hA", FakeVM())
    steps = [(1000, 60), (3000, 80), (5000, 99)]
    free = heartbeats(0, 6000)                            # the guest never stalls
    with pytest.raises(TestFail, match=r"throttled at 60 % \(1.0-3.0 s\) but the guest "
                                       r"heartbeat stood still only 0.00 of that time "
                                       r"\(expected 0.20, required >= 0.13"):
        test._check_vcpu_sleeps("vm1 mig2 hA -> hB", free, 0, steps)
    sleeping = heartbeats(0, 1000) + heartbeats(1000, 3000, 10, 20, seq0=100) + \
        heartbeats(3000, 5000, 10, 40, seq0=1000)
    test._check_vcpu_sleeps("vm1 mig2 hA -> hB", sleeping, 0, steps)


def test_destination_guest_crash_is_quoted(tmp_path: Path) -> None:
    vm = FakeVM()
    vm.serial_log_path = tmp_path / "vm1-serial.log"  # type: ignore[attr-defined]
    vm.serial_log_path.write_text(  # type: ignore[attr-defined]
        "mhm-guest# \n[ 28.02] BUG: unable to handle page fault for address: ffffffff8235a98a\n"
        "[ 28.07] Kernel panic - not syncing: Fatal exception in interrupt\nSeaBIOS (version)\n")
    test = scenario(AutoConvergeMigration, "hB", vm)
    mig = cancel_mig("hB", vm)
    text = test._guest_crash(mig, "vm1")
    assert "BUG: unable to handle page fault" in text and "Kernel panic" in text
    assert "The guest rebooted." in text
    vm.serial_log_path.write_text("mhm-guest# MEMCHECK OK\n")  # type: ignore[attr-defined]
    assert test._guest_crash(mig, "vm1") == ""
