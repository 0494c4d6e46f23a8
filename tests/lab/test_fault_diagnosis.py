"""Faults whose diagnosis needs the controller as the relay of last resort:
the hosts partitioned for good mid-migration, a host frozen (issue #15).

Times run from the return of the fault call to the end of autotest-remote
(the last host's verdict).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Callable

from multihost_migration.lab import faults
from multihost_migration.lab.demo import ROOT, autotest_remote_argv
from multihost_migration.lab.inventory import Inventory
from multihost_migration.status import parse
from tests.lab.test_autotest_remote import guest_lab  # noqa: F401
from tests.lab.test_faults import lab_leftovers, popen_run, wait_until  # noqa: F401
from tests.lab.test_faults_migration import SLOW, migrating

TEST = "integrity.once.tcp.JeOS.mhm"
STALL = 15


def host_verdict(entries: list, test: str, host: str) -> tuple[str, str]:
    found = [e for e in entries if e.subdir == f"{test}/{host}" and
             e.status in ("GOOD", "WARN", "FAIL", "ERROR", "ABORT", "TEST_NA")]
    assert found, f"no verdict for {host}"
    return found[0].status, found[0].reason


def test_partition_for_good_mid_migration_both_verdicts_fast(
        guest_lab: Inventory, tmp_path: Path,  # noqa: F811
        popen_run: Callable[..., subprocess.Popen[str]]) -> None:  # noqa: F811
    """h1 and h2 lose each other for good while the migration runs; the
    controller still reaches both.  Both verdicts come within the stall
    timeout + 15 s, naming the stalled migration and the lost contact."""
    args = [a for a in SLOW if not a.startswith("mig_stall_timeout")]
    try:
        proc = popen_run(*args, f"mig_stall_timeout={STALL}")
        assert wait_until(lambda: migrating(guest_lab), 120), "the migration never started"
        time.sleep(1.0)
        faults.partition(guest_lab, "h1", "h2")
        hit = time.monotonic()
        out, _ = proc.communicate(timeout=STALL + 120)
        took = time.monotonic() - hit
    finally:
        faults.heal(guest_lab)
    assert proc.returncode == 1, out[-3000:]
    assert took < STALL + 15, f"the last verdict came {took:.0f} s after the partition"
    entries = parse((tmp_path / "r" / "status.log").read_text())
    h1 = host_verdict(entries, TEST, "h1")
    h2 = host_verdict(entries, TEST, "h2")
    assert h1[0] == "FAIL" and "stalled at" in h1[1] and "lost contact" in h1[1], h1
    assert h2[0] == "FAIL" and h2[1].startswith("stopped because h1 failed: "), h2
    assert "stalled at" in h2[1], h2
    assert wait_until(lambda: not lab_leftovers(guest_lab), 15), lab_leftovers(guest_lab)


def test_frozen_host_is_unresponsive_and_swept_by_the_next_job(
        guest_lab: Inventory, tmp_path: Path,  # noqa: F811
        popen_run: Callable[..., subprocess.Popen[str]]) -> None:  # noqa: F811
    """h2 hangs (every process stopped, sshd too) after the first migration:
    the controller declares it unresponsive, tells h1, and the job ends
    within sync_timeout + 30 s; once thawed, what it left is removed by the
    next job's sweep on h2."""
    sync_timeout, unresponsive = 60, 15
    thawed = []
    try:
        proc = popen_run("only integrity.once", "migrate_count=4",
                         f"sync_timeout={sync_timeout}",
                         f"host_unresponsive_timeout={unresponsive}")
        # mig2 goes h2 -> h1: its destination QEMU on h1 appears, then h2 hangs
        assert wait_until(lambda: bool(faults.processes(guest_lab, "h1", "/mig2-dst/")), 180), \
            "the second migration never started"
        time.sleep(2.0)
        faults.freeze(guest_lab, "h2")
        hit = time.monotonic()
        out, _ = proc.communicate(timeout=sync_timeout + 120)
        took = time.monotonic() - hit
        faults.thaw(guest_lab, "h2")
        thawed.append(True)
    finally:
        if not thawed:
            faults.thaw(guest_lab, "h2")
    assert took < sync_timeout + 30, f"the job ended {took:.0f} s after the freeze"
    assert proc.returncode == 2, out[-3000:]
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    test = next(t for t in results["tests"] if t["name"] == TEST)
    h2 = test["host_results"]["h2"]
    assert h2["status"] == "ERROR" and h2["reason"].startswith("host h2 unresponsive since"), h2
    assert "last phase:" in h2["reason"], h2
    assert any("/tmp/mhm-" in item for item in h2["left_behind"]), h2
    h1 = test["host_results"]["h1"]
    assert h1["reason"].startswith("stopped because h2 became unresponsive"), h1
    stale = [i.split(":", 1)[1].split()[0] for i in h2["left_behind"] if i.startswith("h2:/")]
    # Thawed, h2's client job hears its channel is gone, cleans up and exits;
    # the next job on h2 removes the directory it left.
    assert wait_until(lambda: not faults.processes(guest_lab, "h2", "multihost_migration.client"),
                      60), "the thawed client job did not exit"
    # the sweep takes only workdirs of jobs gone and started stale_workdir_age ago
    argv = autotest_remote_argv(guest_lab, tmp_path / "r2", ROOT / "control.srv",
                                ["only migrate_multi_host", "stale_workdir_age=1"])
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:]
    results2 = json.loads((tmp_path / "r2" / "results.json").read_text())
    swept = results2["tests"][0]["host_results"]["h2"].get("swept", [])
    assert stale and stale[0] in swept, (stale, swept)
    assert wait_until(lambda: not lab_leftovers(guest_lab), 15), lab_leftovers(guest_lab)
