"""The whole path: autotest-remote -m h1,h2 control.srv on the lab, real QEMU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from multihost_migration.lab import netns
from multihost_migration.lab.lab import lab_qemu_pids as qemu_pids
from multihost_migration.lab.demo import ROOT, autotest_remote_argv
from multihost_migration.lab.inventory import Inventory
from multihost_migration.status import parse

TEST = "migrate_multi_host.tcp.JeOS.mhm"
# The pair autotest-remote runs on: h1,h2 unless MHM_TEST_HOSTS names
# another pair of a bigger lab (MHM_LAB_HOSTS), so suites can run side by side.
TEST_HOSTS = os.environ.get("MHM_TEST_HOSTS", "h1,h2").split(",")




@contextmanager
def no_qemu_left(hosts: list[str]) -> Iterator[None]:
    """Asserts no QEMU runs on `hosts` before and after the block (those
    left are killed first, so one test's leak does not fail the next)."""
    assert qemu_pids(hosts) == [], f"QEMU running on {hosts} before the test"
    yield
    left = qemu_pids(hosts)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"QEMU left running on {hosts} after the test"


def user_scenario_cfg(tmp_path: Path, name: str, source: str) -> Path:
    """A user's scenario module `name`.py (from `source`) in tmp_path and a
    cfg that selects it on the tiny guest, as a user would write them."""
    (tmp_path / f"{name}.py").write_text(source)
    cfg = tmp_path / "tests.cfg"
    cfg.write_text(textwrap.dedent(f"""\
        include {ROOT / 'cfg' / 'base.cfg'}
        include {ROOT / 'cfg' / 'guests.cfg'}
        only JeOS.mhm
        variants:
            - {name}:
                type = {name}
                scenario_dirs = {tmp_path}
        """))
    return cfg


@pytest.fixture
def guest_lab(inventory: Inventory) -> Iterator[Inventory]:
    """The lab with the guest built; asserts no QEMU outlives the test (on
    the hosts the test uses)."""
    subprocess.run([sys.executable, "-m", "multihost_migration.lab.cli", "guest", "build"],
                   check=True, timeout=300)
    with no_qemu_left(TEST_HOSTS):
        yield inventory


def run_autotest_remote(inv: Inventory, results: Path, *control_args: str,
                        options: tuple[str, ...] = (),
                        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """autotest-remote from the lab controller, under TCG; `options` go
    before the control file, `control_args` after it."""
    control = str(ROOT / "control.srv")
    argv = autotest_remote_argv(inv, results, Path(control), list(control_args),
                                hosts=TEST_HOSTS)
    at = argv.index(control)
    argv[at:at] = list(options)
    argv[argv.index(f"accel={inv.accel}")] = "accel=tcg"
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def test_demo_migrates_a_real_guest_from_h1_to_h2(guest_lab: Inventory, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "multihost_migration.lab.demo",
                           "--results", str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = (tmp_path / "latest").resolve()
    assert str(results) in proc.stdout and "verdict: GOOD" in proc.stdout

    entries = parse((results / "status.log").read_text())
    assert entries[-1].status == "END GOOD"
    test_end = [e for e in entries if e.subdir == TEST and e.status.startswith("END")]
    assert test_end and test_end[-1].status == "END GOOD"

    testdir = results / "multihost_migration.h1_h2" / TEST
    mig = json.loads((results / "results.json").read_text())["tests"][0]["migrations"]
    assert len(mig) == 1 and mig[0]["src"] == "h1" and mig[0]["dst"] == "h2"
    stats = mig[0]["stats"]["vm1"]
    assert stats["status"] == "completed" and stats["transferred"] > 0

    # The guest ran on h1 before: it booted there and dd was started there ...
    src_serial = (testdir / "h1" / "vm1" / "mig1-src" / "vm1-serial.log").read_text()
    assert "login:" in src_serial
    src_log = (testdir / "h1" / "debug" / "client.DEBUG").read_text()
    assert "guest cmd 'killall -0 dd' -> 0" in src_log
    # ... and on h2 after: the same shell answered there (no new boot, no
    # login), and the dd started on h1 was still running.
    dst_serial = (testdir / "h2" / "vm1" / "mig1-dst" / "vm1-serial.log").read_text()
    assert "login:" not in dst_serial and "SeaBIOS" not in dst_serial, \
        "the destination guest rebooted instead of migrating"
    assert "__MHM_" in dst_serial, "no command answered on h2's serial console"
    dst_log = (testdir / "h2" / "debug" / "client.DEBUG").read_text()
    assert "guest cmd 'killall -0 dd' -> 0" in dst_log
    assert "guest cmd 'killall -9 dd' -> 0" in dst_log
    # The source QEMU handed over and was stopped; h2's was stopped at the end.
    assert "vm1: source QEMU is postmigrate, the guest runs on h2 now" in src_log
    assert "vm1: destination guest is running on h2" in dst_log
    for host in ("h1", "h2"):
        assert (testdir / host / "debug" / "client.DEBUG").stat().st_size > 0
        assert list((testdir / host / "vm1").glob("*/vm1-qemu.log"))


def test_wrong_image_name_is_an_error_with_the_reason(guest_lab: Inventory, tmp_path: Path) -> None:
    start = time.monotonic()
    proc = run_autotest_remote(guest_lab, tmp_path / "r", "create_image=no",
                               "image_name=no-such-disk", "only migrate_multi_host")
    elapsed = time.monotonic() - start
    assert proc.returncode == 2     # an image the test needs is missing: ERROR
    status = (tmp_path / "r" / "status.log").read_text()
    entries = parse(status)
    assert entries[-1].status == "END ERROR"
    fail = [e for e in entries if e.status == "ERROR"]
    # found by the preflight, before any guest starts, with the fix
    assert fail and "no-such-disk" in fail[0].reason and "missing" in fail[0].reason
    assert "copy them to the shared storage" in fail[0].reason
    assert TEST not in status, "a test started with a missing image"
    assert elapsed < 60, f"a missing image took {elapsed:.0f} s to report"


def test_destination_qemu_killed_before_migration_is_a_fail(guest_lab: Inventory,
                                                             tmp_path: Path) -> None:
    """The fault comes from outside: the incoming QEMU is killed as it appears on h2."""
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            for pid in netns.pids("mhm-h2"):
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if argv[0].endswith(b"qemu-system-x86_64") and b"-incoming" in argv:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    start = time.monotonic()
    try:
        proc = run_autotest_remote(guest_lab, tmp_path / "r", "only migrate_multi_host")
    finally:
        stop.set()
        thread.join(5)
    elapsed = time.monotonic() - start
    assert killed, "the destination QEMU never appeared"
    assert proc.returncode == 1
    entries = parse((tmp_path / "r" / "status.log").read_text())
    verdict = [e for e in entries if e.subdir == TEST and e.status in ("GOOD", "FAIL", "ERROR")]
    assert verdict and verdict[0].status == "FAIL", verdict
    assert "h2" in verdict[0].reason
    # the host whose QEMU died says so, with the signal (root cause first)
    h2 = [e for e in entries if e.subdir == f"{TEST}/h2" and e.status == "FAIL"]
    assert h2 and "killed by signal 9 (SIGKILL)" in h2[0].reason, h2
    assert h2[0].reason.startswith("QEMU of vm1"), h2[0].reason
    assert elapsed < 60, f"took {elapsed:.0f} s"
