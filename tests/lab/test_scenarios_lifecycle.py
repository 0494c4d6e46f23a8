"""The guest-lifecycle scenarios on the lab: after_login, early_boot, reboot,
timedrift.  Each passes with its verification in the logs, and FAILs with
the evidence when what it checks is broken on purpose."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from multihost_migration.lab.inventory import Inventory
from tests.lab.test_autotest_remote import (TEST_HOSTS, guest_lab,  # noqa: F401
                                            run_autotest_remote)
from tests.lab.test_scenarios import write_cfg

SRC, DST = TEST_HOSTS


class Run(NamedTuple):
    returncode: int
    output: str
    test: dict[str, Any]

    @property
    def logdir(self) -> Path:
        return Path(self.test["logdir"])

    def info(self, host: str) -> str:
        return (self.logdir / host / "debug" / "client.INFO").read_text()

    def serial(self, host: str, incarnation: str) -> str:
        return (self.logdir / host / "vm1" / incarnation / "vm1-serial.log").read_text(
            errors="replace")


def run_variant(lab: Inventory, tmp_path: Path, variant: str, *lines: str) -> Run:
    cfg = write_cfg(tmp_path, f"only {variant}", *lines)
    proc = run_autotest_remote(lab, tmp_path / "r", options=("--cfg", str(cfg)), timeout=600)
    test = json.loads((tmp_path / "r" / "results.json").read_text())["tests"][0]
    return Run(proc.returncode, proc.stdout[-3000:], test)


def test_after_login_the_same_shell_and_workload_run_on(guest_lab: Inventory,  # noqa: F811
                                                        tmp_path: Path) -> None:
    run = run_variant(guest_lab, tmp_path, "after_login")
    assert run.returncode == 0 and run.test["status"] == "GOOD", run.output
    assert [(m["src"], m["dst"]) for m in run.test["migrations"]] == [(SRC, DST)]
    started = re.search(r"logged in \(shell PID (\d+)\), workload PID (\d+) running",
                        run.info(SRC))
    assert started, run.info(SRC)
    shell, pid = started.groups()
    # checked on both hosts against the source's notes
    for host in (SRC, DST):
        assert (f"login shell PID {shell} -> {shell}, workload PID {pid} -> {pid}"
                in run.info(host))
    assert "memory OK" in run.info(DST) and "disk pattern OK" in run.info(DST)


def test_early_boot_the_boot_ends_on_the_destination(guest_lab: Inventory,  # noqa: F811
                                                     tmp_path: Path) -> None:
    run = run_variant(guest_lab, tmp_path, "early_boot")
    assert run.returncode == 0 and run.test["status"] == "GOOD", run.output
    src, dst = run.serial(SRC, "mig1-src"), run.serial(DST, "mig1-dst")
    # the kernel started on the source, which never offered a login ...
    assert "Linux version" in src and "login:" not in src
    # ... and the boot went on (not over) on the destination, up to the login
    assert "Linux version" not in dst and "login:" in dst
    for host in (SRC, DST):
        assert f"boot split verified: begun on {SRC}, finished on {DST}" in run.info(host)
    assert "disk pattern of 4 MiB written and read back" in run.info(DST)


def test_early_boot_fails_when_the_boot_ends_on_the_source(guest_lab: Inventory,  # noqa: F811
                                                           tmp_path: Path) -> None:
    # Waiting for the login prompt before migrating: not an early-boot migration.
    run = run_variant(guest_lab, tmp_path, "early_boot", "early_boot_wait_for = login:")
    assert run.returncode != 0 and run.test["status"] == "FAIL", run.output
    assert (f"vm1, mig1 {SRC}->{DST}: the guest finished booting on the source {SRC} before "
            "the migration ended" in run.test["reason"]), run.test["reason"]
    assert "mhm-guest login:" in run.test["reason"]      # the source's log as evidence


def test_reboot_the_new_boot_ends_on_the_destination(guest_lab: Inventory,  # noqa: F811
                                                     tmp_path: Path) -> None:
    run = run_variant(guest_lab, tmp_path, "reboot")
    assert run.returncode == 0 and run.test["status"] == "GOOD", run.output
    src, dst = run.serial(SRC, "mig1-src"), run.serial(DST, "mig1-dst")
    after_command = src[src.rindex("login[") :]
    assert "Requesting system reboot" in after_command and "login:" not in after_command
    assert "login:" in dst
    ids = re.search(r"boot_id (\S+) -> (\S+), uptime at login", run.info(DST))
    assert ids and ids.group(1) != ids.group(2), run.info(DST)
    assert "disk pattern of 4 MiB written before the reboot reads back" in run.info(DST)
    assert f"reboot across the migration verified: begun on {SRC}" in run.info(SRC)


def test_reboot_fails_when_the_guest_does_not_reboot(guest_lab: Inventory,  # noqa: F811
                                                     tmp_path: Path) -> None:
    run = run_variant(guest_lab, tmp_path, "reboot", "reboot_command = true",
                      "reboot_wait_timeout = 3")
    assert run.returncode != 0 and run.test["status"] == "FAIL", run.output
    reason = run.test["reason"]
    assert f"vm1, mig1 {SRC}->{DST}: no new boot on {DST}: boot_id is still" in reason, reason
    assert "this boot began before the reboot" in reason


def test_timedrift_stays_within_the_limit(guest_lab: Inventory,  # noqa: F811
                                          tmp_path: Path) -> None:
    run = run_variant(guest_lab, tmp_path, "timedrift")
    assert run.returncode == 0 and run.test["status"] == "GOOD", run.output
    migrations = sorted(run.test["migrations"], key=lambda m: int(m["id"][len("mig"):]))
    assert [(m["src"], m["dst"]) for m in migrations] == [
        (SRC, DST), (DST, SRC), (SRC, DST), (DST, SRC)]
    report = json.loads((run.logdir / SRC / "timedrift.json").read_text())["vm1"]
    assert [look["host"] for look in report["looks"]] == [SRC, DST, SRC, DST, SRC]
    assert abs(report["drift"]["drift"]) <= report["limit"] == 2.0
    assert re.search(r"vm1: guest clock drift [-+]\d+\.\d+ s \(±\d\.\d+\) over 4 "
                     r"migration\(s\)", run.info(DST))


def test_timedrift_fails_when_the_guest_clock_steps(guest_lab: Inventory,  # noqa: F811
                                                    tmp_path: Path) -> None:
    run = run_variant(guest_lab, tmp_path, "timedrift", "timedrift_step = 10")
    assert run.returncode != 0 and run.test["status"] == "FAIL", run.output
    drifted = re.search(r"vm1: guest clock drifted \+(\d+\.\d+) s .* more than "
                        r"timedrift_limit = 2 s", run.test["reason"])
    assert drifted and 8.0 < float(drifted.group(1)) < 10.5, run.test["reason"]
