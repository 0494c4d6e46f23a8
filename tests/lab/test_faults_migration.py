"""Faults in the middle of a migration, provoked from outside the suite.

The migration is slowed down (max-bandwidth) so that it is surely running
when the fault hits: a QEMU killed on either side, or the hosts partitioned.
The guest runs the memory dirtier, so "the source guest is intact" is a real
memory check, not a liveness ping.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable

from multihost_migration.lab import faults
from multihost_migration.lab.inventory import Inventory
from multihost_migration.status import parse
from tests.lab.test_autotest_remote import guest_lab  # noqa: F401
from tests.lab.test_faults import incoming_qemu_on, lab_leftovers, popen_run, wait_until  # noqa: F401

TEST = "integrity.once.tcp.JeOS.mhm"
SLOW = ("only integrity", "migrate_parameter_max-bandwidth=4M", "mig_stall_timeout=5")


def migrating(inv: Inventory) -> bool:
    """The source QEMU on h1 holds an established TCP connection to h2."""
    out = subprocess.run(["ip", "netns", "exec", "mhm-h1", "ss", "-tnpH", "state",
                          "established", "dst", inv.host("h2").address],
                         capture_output=True, text=True).stdout
    return "qemu-system" in out


def run_with_fault(inv: Inventory, start: Callable[..., subprocess.Popen[str]],
                   fault: Callable[[], None]) -> tuple[list, str, float]:
    proc = start(*SLOW)
    assert wait_until(lambda: migrating(inv), 120), "the migration never started"
    time.sleep(1.0)
    fault()
    hit = time.monotonic()
    out, _ = proc.communicate(timeout=180)
    took = time.monotonic() - hit
    return out, proc.returncode, took


def results_of(tmp_path: Path) -> list:
    return parse((tmp_path / "r" / "status.log").read_text())


def host_reason(entries: list, host: str) -> str:
    fails = [e for e in entries if e.subdir == f"{TEST}/{host}" and e.status == "FAIL"]
    assert fails, f"no FAIL for {host}"
    return fails[0].reason


def test_destination_qemu_killed_mid_migration(guest_lab: Inventory, tmp_path: Path,  # noqa: F811
                                               popen_run: Callable[..., subprocess.Popen[str]]) -> None:  # noqa: F811
    out, code, took = run_with_fault(
        guest_lab, popen_run, lambda: faults.kill(guest_lab, "h2", "-incoming"))
    assert code == 1, out[-2000:]
    reason = host_reason(results_of(tmp_path), "h1")
    assert "migration" in reason and "failed" in reason
    assert "source guest still running and its memory is intact" in reason
    assert took < 15, f"the FAIL came {took:.0f} s after the kill"
    assert wait_until(lambda: not lab_leftovers(guest_lab), 10), lab_leftovers(guest_lab)


def test_source_qemu_killed_mid_migration(guest_lab: Inventory, tmp_path: Path,  # noqa: F811
                                          popen_run: Callable[..., subprocess.Popen[str]]) -> None:  # noqa: F811
    def kill_source() -> None:
        assert faults.kill(guest_lab, "h1", "/mig1-src/vm1-serial.log")

    out, code, took = run_with_fault(guest_lab, popen_run, kill_source)
    assert code == 1, out[-2000:]
    entries = results_of(tmp_path)
    assert "vm1" in host_reason(entries, "h1")
    # the destination never ran the half-received guest
    dst_log = next(tmp_path.glob("r/*/integrity*/h2/debug/client.DEBUG")).read_text()
    assert "destination guest is running" not in dst_log
    assert took < 30
    assert wait_until(lambda: not lab_leftovers(guest_lab), 10), lab_leftovers(guest_lab)


def test_partition_mid_migration(guest_lab: Inventory, tmp_path: Path,  # noqa: F811
                                 popen_run: Callable[..., subprocess.Popen[str]]) -> None:  # noqa: F811
    """A transient partition: the stalled migration is cancelled by the
    watchdog (5 s without progress), the source guest is intact; the network
    heals after 10 s and the destination learns the reason."""
    healed = []
    try:
        proc = popen_run(*SLOW)
        assert wait_until(lambda: migrating(guest_lab), 120)
        time.sleep(1.0)
        faults.partition(guest_lab, "h1", "h2")
        time.sleep(10)
        faults.heal(guest_lab)
        healed.append(True)
        out, _ = proc.communicate(timeout=180)
    finally:
        if not healed:
            faults.heal(guest_lab)
    assert proc.returncode == 1, out[-2000:]
    reason = host_reason(results_of(tmp_path), "h1")
    assert "stalled at" in reason and "no progress for 5 s" in reason and "cancelled" in reason
    assert "source guest still running and its memory is intact" in reason
    assert wait_until(lambda: not lab_leftovers(guest_lab), 10), lab_leftovers(guest_lab)
