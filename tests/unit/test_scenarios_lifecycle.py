"""The lifecycle scenarios' checks on good and bad evidence (no QEMU, no lab).

Each checker must accept what a correct run shows and name the VM, the
migration, the hosts and the evidence when something is wrong.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from multihost_migration.errors import GuestCheckError
from multihost_migration.guest.console import ConsoleSession
from multihost_migration.scenarios import (migration_after_login, migration_early_boot,
                                           migration_timedrift)
from multihost_migration.scenarios.migration_after_login import (PROBE_COMMAND, WorkloadProbe,
                                                                 parse_probe, workload_problems)
from multihost_migration.scenarios.migration_early_boot import (boot_failure,
                                                                boot_split_problems, clean,
                                                                read_log, serial_summary,
                                                                wait_for_serial)
from multihost_migration.scenarios.migration_reboot import reboot_problems
from multihost_migration.scenarios.migration_timedrift import (ClockSample, clock_drift,
                                                               drift_problem, measure,
                                                               parse_adjtimex)
from multihost_migration.server.dispatch import select_tests

ROOT = Path(__file__).resolve().parents[2]

# -- serial logs (early_boot, reboot) -------------------------------------------

SRC_BOOT = ("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\nBooting from ROM..\r\n"
            "[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists)\r\n"
            "[    0.016787] Spectre V2 : Mitigation: Retpolines\r\n"
            "[    0.021910] x86/fpu: x87 FPU will use FXSAVE\r\n")
DST_BOOT = ("[    0.650583] Freeing SMP alternatives memory: 36K\r\n"
            "[    4.999707] Run /init as init process\r\n"
            "\r\nmhm-guest login: root\r\nPassword: \r\n")
MARKER = "Linux version"


def summary(text: str, marker: str = MARKER) -> dict[str, Any]:
    return serial_summary(text, "login:", marker)


def test_serial_summary_reads_prompt_marker_and_kernel_time() -> None:
    src = summary(SRC_BOOT)
    assert src["booted"] is False and src["marker"] is True
    assert (src["first_ts"], src["last_ts"]) == (0.0, 0.02191)
    dst = summary(DST_BOOT)
    assert dst["booted"] is True and dst["marker"] is False
    assert (dst["first_ts"], dst["last_ts"]) == (0.650583, 4.999707)
    assert "\x1b" not in src["tail"] and "\r" not in src["tail"]
    assert summary("", marker="")["marker"] is False
    assert clean("\x1bc\x1b[2JSeaBIOS\r\n") == "SeaBIOS\n"


def test_a_boot_split_between_the_hosts_passes() -> None:
    assert boot_split_problems("vm1", "mig1", "h3", "h4", summary(SRC_BOOT),
                               summary(DST_BOOT), MARKER) == []


def test_a_boot_finished_on_the_source_fails_with_its_log() -> None:
    src = summary(SRC_BOOT + DST_BOOT)
    problems = boot_split_problems("vm1", "mig1", "h3", "h4", src, summary("mhm-guest# "),
                                   MARKER)
    assert any("vm1, mig1 h3->h4: the guest finished booting on the source h3" in p
               and "login: root" in p for p in problems), problems
    assert any("no login prompt" in p and "h4" in p for p in problems), problems


def test_a_boot_started_over_or_going_back_in_time_fails() -> None:
    restarted = summary(SRC_BOOT + DST_BOOT)
    problems = boot_split_problems("vm1", "mig2", "h4", "h3", summary(SRC_BOOT), restarted,
                                   MARKER)
    assert any("the boot started over on the destination h3" in p for p in problems)
    assert any("kernel time goes back" in p and "0.021910" in p for p in problems)


def test_a_source_that_never_reached_the_marker_fails() -> None:
    bios_only = summary("SeaBIOS (version 1.16.2)\r\n")
    problems = boot_split_problems("vm1", "mig1", "h3", "h4", bios_only, summary(DST_BOOT),
                                   MARKER)
    assert problems and "never shows 'Linux version'" in problems[0]


OOPS = ("[    1.011823] NMI watchdog: Perf NMI watchdog permanently disabled\r\n"
        "[    1.021782] BUG: kernel NULL pointer dereference, address: 0000000000000000\r\n"
        "[    1.022757] #PF: supervisor instruction fetch in kernel mode\r\n")


def test_a_boot_that_never_ends_names_the_oops_and_the_passes() -> None:
    message = boot_failure("vm1 on h4 after mig1", SRC_BOOT + OOPS, 60.0, passes=5)
    assert message.startswith("vm1 on h4 after mig1: the boot did not finish here: the "
                              "guest kernel crashed: 'BUG: kernel NULL pointer dereference")
    assert "the migration took 5 dirty-sync passes" in message
    quiet = boot_failure("vm1 on h4 after mig1", SRC_BOOT, 60.0, passes=3)
    assert "no login within 60 s (console: " in quiet and "FXSAVE" in quiet
    assert "passes" not in quiet


class FakeVM:
    def __init__(self, path: Path, alive: bool = True) -> None:
        self.serial_log_path = path
        self.alive = alive

    def is_alive(self) -> bool:
        return self.alive


def test_wait_for_serial_and_read_log(tmp_path: Path) -> None:
    log = tmp_path / "vm1-serial.log"
    vm: Any = FakeVM(log)
    assert wait_for_serial(vm, "login:", timeout=0.2) is None     # no log at all
    log.write_text("mhm-guest login: \r\nmhm-guest# reboot\r\n")
    offset = len("mhm-guest login: \r\n")
    assert read_log(log, offset) == "mhm-guest# reboot\r\n"
    assert wait_for_serial(vm, "login:", timeout=1.0) is not None
    assert wait_for_serial(vm, "login:", timeout=0.2, offset=offset) is None
    assert wait_for_serial(FakeVM(log, alive=False), "Restarting",  # type: ignore[arg-type]
                           timeout=30.0) is None                    # QEMU gone: no wait


# -- reboot ---------------------------------------------------------------------

BEFORE = {"boot_id": "aaaa", "uptime": 7.7, "t_reboot": 1000.0, "under_way": 1.2}
AFTER = {"boot_id": "bbbb", "uptime": 7.5, "t_login": 1011.3}
SRC_REBOOT = summary("\rThe system is going down NOW!\r\n\rRequesting system reboot\r\n"
                     "[    7.378534] reboot: Restarting system\r\nSeaBIOS\r\n", marker="")
DST_REBOOT = summary(DST_BOOT, marker="")


def reboot(before: dict[str, Any], after: dict[str, Any], src: dict[str, Any] = SRC_REBOOT,
           dst: dict[str, Any] = DST_REBOOT) -> list[str]:
    return reboot_problems("vm1", "mig1", "h3", "h4", before, after, src, dst, slack=2.0)


def test_a_reboot_finished_on_the_destination_passes() -> None:
    assert reboot(BEFORE, AFTER) == []


def test_no_reboot_fails_on_boot_id_and_uptime() -> None:
    problems = reboot({**BEFORE, "under_way": None},
                      {**AFTER, "boot_id": "aaaa", "uptime": 19.0})
    assert any("did not start during a reboot" in p for p in problems)
    assert any("vm1, mig1 h3->h4: no new boot on h4: boot_id is still aaaa" in p
               for p in problems)
    assert any("uptime 19.00 s at login on h4" in p and "11.30 s earlier on h3" in p
               for p in problems)


def test_a_reboot_finished_on_the_source_fails() -> None:
    src = summary("Requesting system reboot\r\nmhm-guest login: ", marker="")
    problems = reboot(BEFORE, AFTER, src=src, dst=summary("mhm-guest# ", marker=""))
    assert any("the reboot finished on the source h3" in p for p in problems)
    assert any("no login prompt on the destination h4" in p for p in problems)


# -- after_login ----------------------------------------------------------------

PROBE_OUTPUT = ("PID=107\nSHELL=96\nALIVE=1\n"
                "CMD=sh -c i=0; while :; do i=$((i+1)); echo $i > "
                f"{migration_after_login.WORKLOAD_COUNTER}.new; ...\nCOUNT=17\n")


def look(**changes: Any) -> WorkloadProbe:
    return parse_probe(PROBE_OUTPUT)._replace(**changes)


def test_parse_probe() -> None:
    probe = parse_probe(PROBE_OUTPUT.replace("\n", "\r\n"))
    assert (probe.shell_pid, probe.pid, probe.alive, probe.counter) == (96, 107, True, 17)
    assert migration_after_login.WORKLOAD_COUNTER in probe.cmdline
    gone = parse_probe("PID=\nSHELL=96\nALIVE=0\nCMD=\nCOUNT=\n")
    assert (gone.pid, gone.alive, gone.counter) == (None, False, None)
    with pytest.raises(GuestCheckError, match="unexpected output"):
        parse_probe("sh: syntax error")
    assert migration_after_login.WORKLOAD_PID_FILE in PROBE_COMMAND


def test_the_same_workload_running_on_passes() -> None:
    assert workload_problems("vm1, mig1 h3->h4", look(counter=3), look(counter=17),
                             look(counter=46)) == []


@pytest.mark.parametrize("after, later, expected", [
    (look(shell_pid=120), look(), "not the same login shell: PID 96 before the migration, "
                                  "120 after"),
    (look(pid=130), look(), "the workload was PID 107 on the source, "
                            "/run/mhm-workload.pid says 130"),
    (look(alive=False, cmdline="", counter=17), look(alive=False), "workload PID 107 is gone"),
    (look(cmdline="sleep 100"), look(counter=40), "is not the workload any more"),
    (look(counter=1), look(counter=40), "counter went back from 3 to 1"),
    (look(counter=17), look(counter=17), "does not run: its counter stayed at 17"),
    (look(counter=None), look(), "is unreadable"),
])
def test_a_lost_shell_or_workload_fails(after: WorkloadProbe, later: WorkloadProbe,
                                        expected: str) -> None:
    problems = workload_problems("vm1, mig1 h3->h4", look(counter=3), after, later)
    assert any(expected in p and p.startswith("vm1, mig1 h3->h4: ") for p in problems), \
        problems


def test_probe_command_sees_a_real_loop_run_and_die(tmp_path: Path) -> None:
    """The guest's shell lines, run by the host's sh on files in tmp_path."""
    def here(text: str) -> str:
        return (text.replace(migration_after_login.WORKLOAD_COUNTER, str(tmp_path / "count"))
                .replace(migration_after_login.WORKLOAD_PID_FILE, str(tmp_path / "pid")))

    def probe() -> WorkloadProbe:
        out = subprocess.run(["sh", "-c", here(PROBE_COMMAND)], capture_output=True,
                             text=True, timeout=10, check=True).stdout
        return parse_probe(out)

    loop = subprocess.Popen(["sh", "-c", here(migration_after_login.WORKLOAD_SCRIPT)])
    try:
        (tmp_path / "pid").write_text(f"{loop.pid}\n")
        deadline = time.monotonic() + 10
        first = probe()
        while first.counter is None and time.monotonic() < deadline:
            time.sleep(0.1)
            first = probe()
        second = probe()
        while second.counter == first.counter and time.monotonic() < deadline:
            time.sleep(0.1)     # a busy machine may run the loop slowly
            second = probe()
        assert first.alive and first.pid == loop.pid and str(tmp_path / "count") in first.cmdline
        assert second.counter is not None and first.counter is not None
        assert second.counter > first.counter
    finally:
        loop.kill()
        loop.wait(10)
    dead = probe()
    assert not dead.alive
    problems = workload_problems("vm1, mig1 h3->h4", first, dead, dead)
    assert any(f"workload PID {loop.pid} is gone" in p for p in problems), problems


# -- timedrift ------------------------------------------------------------------

ADJTIMEX = ("    mode:         0\n-o  offset:       0 us\n-t  tick:         10000 us\n"
            "    time.tv_sec:  1795652575\n    time.tv_usec: 642362\n"
            "    return value: 5 (clock not synchronized)\n")


def sample(label: str, host: float, guest: float, error: float = 0.05,
           where: str = "h3") -> ClockSample:
    return ClockSample(where, label, host, guest, error)


def test_parse_adjtimex() -> None:
    assert parse_adjtimex(ADJTIMEX) == pytest.approx(1795652575.642362)
    with pytest.raises(GuestCheckError, match="time.tv_sec"):
        parse_adjtimex("adjtimex: not found")


def test_clock_drift_is_guest_elapsed_minus_host_elapsed() -> None:
    drift = clock_drift(sample("before mig1", 1000.0, 999.0, 0.05),
                        sample("after mig4", 1012.0, 1010.6, 0.07))
    assert drift.host_elapsed == pytest.approx(12.0)
    assert drift.guest_elapsed == pytest.approx(11.6)
    assert drift.drift == pytest.approx(-0.4)
    assert drift.error == pytest.approx(0.12)


def test_drift_within_the_limit_passes_and_a_stepped_clock_fails() -> None:
    looks = [sample("after mig2", 1006.0, 1005.8, where="h3"),     # out of order
             sample("before mig1", 1000.0, 1000.0),
             sample("after mig1", 1003.0, 1002.9, where="h4")]
    drift, problem = drift_problem("vm1", looks, 2, limit=2.0)
    assert problem == "" and drift.drift == pytest.approx(-0.2)
    stepped = looks + [sample("after mig3", 1009.0, 1018.7, where="h4"),
                       sample("after mig4", 1012.0, 1021.6)]
    drift, problem = drift_problem("vm1", stepped, 4, limit=2.0)
    assert drift.drift == pytest.approx(9.6)
    assert problem.startswith("vm1: guest clock drifted +9.600 s (±0.100) from the host "
                              "clock over 4 migration(s) and 12.0 s of host time, more "
                              "than timedrift_limit = 2 s")
    assert "after mig3 on h4: +9.700 s" in problem           # where it jumped
    with pytest.raises(GuestCheckError, match="need two"):
        drift_problem("vm1", looks[:1], 1, limit=2.0)


class ClockShell(ConsoleSession):
    """adjtimex answers with a guest clock 0.5 s behind a fake host clock."""

    def __init__(self, clock: "FakeClock") -> None:
        super().__init__("vm1", Path("/nonexistent"))
        self.clock = clock

    def cmd_status_output(self, command: str, timeout: float = 60.0) -> tuple[int, str]:
        assert command == "adjtimex"
        guest = self.clock.now + 0.01 - 0.5
        self.clock.now += self.clock.trips.pop(0)
        return 0, (f"    time.tv_sec:  {int(guest)}\n"
                   f"    time.tv_usec: {round((guest % 1) * 1e6)}\n")


class FakeClock:
    def __init__(self, trips: list[float]) -> None:
        self.now = 1000.0
        self.trips = trips

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock([0.3, 0.02, 0.2])
    # the module's `time`, not the global one: only measure() sees the fake
    monkeypatch.setattr(migration_timedrift, "time", SimpleNamespace(time=fake.time))
    yield fake


def test_measure_keeps_the_shortest_round_trip(clock: FakeClock) -> None:
    best = measure(ClockShell(clock), "h4", "after mig1", tries=3)
    assert best.error == pytest.approx(0.01)
    assert best.host_time == pytest.approx(1000.31)
    assert best.offset == pytest.approx(-0.5, abs=1e-5)
    assert (best.host, best.label) == ("h4", "after mig1")


# -- cfg ------------------------------------------------------------------------

def test_the_lifecycle_variants_are_defined(tmp_path: Path) -> None:
    cfg = tmp_path / "tests.cfg"
    cfg.write_text("".join(f"include {ROOT / 'cfg' / name}\n"
                           for name in ("base.cfg", "guests.cfg", "subtests.cfg")))
    tests = select_tests(cfg, ["only JeOS.mhm", "only after_login, early_boot, reboot, timedrift"])
    found = {t["shortname"]: t for t in tests}
    assert sorted(found) == ["after_login.tcp.JeOS.mhm", "early_boot.tcp.JeOS.mhm",
                             "reboot.tcp.JeOS.mhm", "timedrift.tcp.JeOS.mhm"]
    assert found["after_login.tcp.JeOS.mhm"]["type"] == "migration_after_login"
    assert found["timedrift.tcp.JeOS.mhm"]["migrate_count"] == "4"
    for name in ("early_boot.tcp.JeOS.mhm", "reboot.tcp.JeOS.mhm"):
        # the verbose boot the scenarios rely on, after the guest's own "quiet"
        assert found[name]["kernel_params"].endswith(" loglevel=7")
        assert (ROOT / "multihost_migration" / "scenarios"
                / f"{found[name]['type']}.py").is_file()
    assert migration_early_boot.DEFAULT_BOOT_DONE == "login:"
