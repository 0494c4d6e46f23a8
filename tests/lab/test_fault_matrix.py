"""The fault matrix (issue #15): each fault, provoked from outside the suite
with the lab's fault commands, in each phase of a migration test; per cell
the verdict, the root cause in the hosts' reasons, the time from the fault
to the end of the run, and what was left behind (must be nothing).

    faults: kill the source QEMU, kill the destination QEMU, kill h2's
            client job, partition h1/h2, freeze h2, block h2's migration port
    phases: boot (the guest boots on h1), active (RAM being sent, slowed by
            max-bandwidth), checking (the destination checks the guest)

setup and device (switchover) are moments of a few milliseconds in the same
code path as active here (the source's migrate/wait, the destination's
wait on the sync session), and postcopy-active is that path too with the
destination serving page faults; they are not separate runs.

Each cell appends a row to $MHM_FAULT_MATRIX (default
/tmp/mhm-fault-matrix.tsv) for README's table.  Slow: make test-full.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from multihost_migration.lab import faults
from multihost_migration.lab.demo import ROOT, autotest_remote_argv
from multihost_migration.lab.inventory import Inventory
from multihost_migration.status import parse
from tests.lab.test_autotest_remote import guest_lab  # noqa: F401
from tests.lab.test_faults import lab_leftovers, wait_until
from tests.lab.test_faults_migration import migrating

pytestmark = pytest.mark.slow

TEST = "integrity.once.tcp.JeOS.mhm"
ARGS = ("only integrity.once", "mig_stall_timeout=10", "sync_timeout=60",
        "host_unresponsive_timeout=15")
#: Slowed down so that the fault surely hits a running migration (with the
#: guest dirtying memory it would not converge at this speed: active only).
SLOW = ("migrate_parameter_max-bandwidth=4M",)
TABLE = Path(os.environ.get("MHM_FAULT_MATRIX", "/tmp/mhm-fault-matrix.tsv"))


def _block_migration_port(inv: Inventory) -> list[int]:
    """Block the port h2's QEMU listens on; [] when none listens (any more)."""
    out = subprocess.run(["ip", "netns", "exec", "mhm-h2", "ss", "-ltnpH"],
                         capture_output=True, text=True).stdout
    ports = [int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()
             if "qemu-system" in line]
    for port in ports:
        faults.block_port(inv, "h2", port)
    return ports


FAULTS: dict[str, Callable[[Inventory], object]] = {
    "kill source QEMU": lambda inv: faults.kill(inv, "h1", "qemu-system"),
    "kill destination QEMU": lambda inv: faults.kill(inv, "h2", "qemu-system"),
    "kill h2's client job": lambda inv: faults.kill(inv, "h2", "multihost_migration.client"),
    "partition": lambda inv: faults.partition(inv, "h1", "h2"),
    "freeze h2": lambda inv: faults.freeze(inv, "h2"),
    "block migration port": _block_migration_port,
}
EXPECTED = {"freeze h2": "ERROR"}            # an unresponsive host; faults else FAIL


class Output:
    """autotest-remote's output, read as it comes (phases show in it)."""

    def __init__(self, proc: "subprocess.Popen[str]") -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: "subprocess.Popen[str]") -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.text += line


PHASES: dict[str, Callable[[Inventory, Output], bool]] = {
    "boot": lambda inv, out: "h1: boot vm1" in out.text,
    "active": lambda inv, out: migrating(inv),
    "checking": lambda inv, out: "h2: checking mig1" in out.text,
}


def _reasons(results: Path) -> dict[str, tuple[str, str]]:
    entries = parse((results / "status.log").read_text())
    out = {}
    for host in ("h1", "h2"):
        found = [e for e in entries if e.subdir == f"{TEST}/{host}" and
                 e.status in ("GOOD", "WARN", "FAIL", "ERROR", "ABORT", "TEST_NA")]
        if found:
            out[host] = (found[0].status, found[0].reason.split("\n")[0][:160])
    return out


@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_in_phase(guest_lab: Inventory, tmp_path: Path,  # noqa: F811
                        fault: str, phase: str) -> None:
    args = list(ARGS) + (list(SLOW) if phase == "active" else [])
    argv = autotest_remote_argv(guest_lab, tmp_path / "r", ROOT / "control.srv", args)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    out = Output(proc)
    try:
        assert wait_until(lambda: PHASES[phase](guest_lab, out), 180), \
            f"phase {phase} never came:\n{out.text[-2000:]}"
        time.sleep(1.0)
        victims = FAULTS[fault](guest_lab)
        hit = time.monotonic()
        proc.wait(timeout=240)
        took = time.monotonic() - hit
    finally:
        faults.heal(guest_lab)
        faults.thaw(guest_lab, "h2")
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(10)
    left = [] if wait_until(lambda: not lab_leftovers(guest_lab), 60) else lab_leftovers(guest_lab)
    hosts = _reasons(tmp_path / "r")
    verdict = parse((tmp_path / "r" / "status.log").read_text())[-1].status.replace("END ", "")
    # A process gone by then (the source QEMU is stopped once the guest runs
    # on the destination) is no fault: the test must pass.
    missed = isinstance(victims, list) and not victims
    row = "\t".join([fault, phase + (" (no such process then)" if missed else ""),
                     verdict, f"{took:.0f}",
                     " | ".join(f"{h}: {s} {r}" for h, (s, r) in hosts.items()),
                     ", ".join(left) or "nothing"])
    with TABLE.open("a") as table:
        table.write(row + "\n")
    assert not left, f"left behind: {left}"
    assert "Traceback" not in out.text
    assert verdict == ("GOOD" if missed else EXPECTED.get(fault, "FAIL")), row
    assert not re.search(r"exited \d+ without a verdict", out.text), row
    if fault == "kill h2's client job" and not missed:   # its cut log closed by the controller
        status = parse((tmp_path / "r" / "status.log").read_text())
        assert any(e.status == "FAIL" and e.subdir.endswith("/h2")
                   and "client job on h2 was killed" in e.reason for e in status), row
