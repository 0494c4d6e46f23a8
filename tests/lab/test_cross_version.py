"""QEMU 7.2 <-> 10.0 on the lab (issue #18): both directions GOOD with memory
and disk verified, the versions in the results; a machine type the
destination's QEMU lacks refused by preflight; `lab up --qemu`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from multihost_migration.lab import lab
from multihost_migration.lab.config import LabConfig
from multihost_migration.lab.inventory import Inventory
from multihost_migration.lab.qemu_choice import SYSTEM_BINARY, installed
from multihost_migration.status import parse
from tests.lab.conftest import connect
from tests.lab.test_autotest_remote import (TEST_HOSTS, guest_lab,  # noqa: F401
                                            run_autotest_remote)
from tests.lab.test_scenarios import write_cfg

NEW = installed().get("10.0", "")
pytestmark = pytest.mark.skipif(not NEW, reason="QEMU 10.0 not installed (scripts/setup.sh)")


def results_by_test(results: Path) -> dict[str, dict[str, Any]]:
    return {t["name"].split(".tcp")[0]: t for t in
            json.loads((results / "results.json").read_text())["tests"]}


def test_cross_version_both_directions_and_baseline(guest_lab: Inventory,  # noqa: F811
                                                    tmp_path: Path) -> None:
    start = time.monotonic()
    cfg = write_cfg(tmp_path, "only tcp", "only cross_version, integrity.once")
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=600)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:]
    tests = results_by_test(tmp_path / "r")
    assert sorted(tests) == ["cross_version.new_to_old", "cross_version.old_to_new",
                             "integrity.once"]
    first, second = TEST_HOSTS
    expect = {"cross_version.old_to_new": ("7.2", "10.0"),
              "cross_version.new_to_old": ("10.0", "7.2"),
              "integrity.once": ("7.2", "7.2")}
    figures = []
    for name, (src_version, dst_version) in expect.items():
        test = tests[name]
        assert test["status"] == "GOOD", test["reason"]
        hosts = test["qemu"]["hosts"]        # what each QEMU said in preflight
        assert hosts[first]["version"].startswith(src_version + "."), hosts
        assert hosts[second]["version"].startswith(dst_version + "."), hosts
        assert "pc-q35-7.2" in test["qemu"]["shared_machine_types"]
        [mig] = test["migrations"]
        assert (mig["src"], mig["dst"]) == (first, second)
        stats = mig["stats"]["vm1"]
        assert stats["status"] == "completed"
        dst_log = (Path(test["logdir"]) / second / "debug" / "client.INFO").read_text()
        assert "memory OK" in dst_log and "disk pattern OK" in dst_log, dst_log[-2000:]
        figures.append(f"{name}: {src_version} -> {dst_version} total "
                       f"{stats['total_time_ms']} ms downtime {stats['downtime_ms']} ms")
    old_to_new = tests["cross_version.old_to_new"]["qemu"]["hosts"]
    assert old_to_new[first]["version"] != old_to_new[second]["version"]
    assert old_to_new[second]["binary"] == NEW
    # the guest ran on pc-q35-7.2 on both sides of the cross-version runs
    qemu_log = next((Path(tests["cross_version.new_to_old"]["logdir"]) / second)
                    .glob("vm1/*/vm1-qemu.log")).read_text()
    assert "pc-q35-7.2" in qemu_log or "pc-q35-7.2" in (
        Path(tests["cross_version.new_to_old"]["logdir"]) / second / "debug"
        / "client.DEBUG").read_text()
    preflight = next((tmp_path / "r").glob("*/preflight.txt")).read_text()
    assert "machines" in preflight and "pc-q35-7.2" in preflight
    print(f"\n{elapsed:.0f} s; " + "; ".join(figures))


def test_machine_type_the_destination_lacks_is_a_preflight_error(
        guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    start = time.monotonic()
    cfg = write_cfg(tmp_path, "only cross_version.new_to_old", "machine_type = pc-q35-10.0")
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=300)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stdout[-3000:]    # ERROR
    status = (tmp_path / "r" / "status.log").read_text()
    errors = [e for e in parse(status) if e.status == "ERROR"]
    destination = TEST_HOSTS[1]
    assert errors and any(
        f"{destination} machine type" in e.reason and SYSTEM_BINARY in e.reason
        and "QEMU 7.2" in e.reason and "'pc-q35-10.0'" in e.reason for e in errors), status
    assert "cross_version.new_to_old" not in status, "a test started"
    assert elapsed < 60


@pytest.fixture
def restored_lab(inventory: Inventory) -> Iterator[Inventory]:
    """Every lab host back on the system QEMU after the test."""
    try:
        yield inventory
    finally:
        lab.up(LabConfig(hosts=len(inventory.hosts)))


def host_qemu_version(inv: Inventory, host: str) -> str:
    remote = connect(inv, host)
    try:
        return remote.run("qemu-system-x86_64 --version", timeout=30).stdout.splitlines()[0]
    finally:
        remote.close()


def test_lab_up_qemu_sets_each_hosts_default(restored_lab: Inventory) -> None:
    hosts = len(restored_lab.hosts)
    cli = [sys.executable, "-m", "multihost_migration.lab.cli", "lab", "up",
           "--hosts", str(hosts), "--no-guest"]
    proc = subprocess.run(cli + ["--qemu", "h2=10.0"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "h2=" in proc.stdout and "(QEMU 10.0." in proc.stdout
    inv = lab.load_inventory(LabConfig().state_dir)
    assert inv.host("h2").qemu_binary == NEW and inv.host("h2").qemu_version.startswith("10.0")
    assert inv.host("h1").qemu_binary == SYSTEM_BINARY
    assert "version 10.0" in host_qemu_version(inv, "h2")      # what runs there by default
    assert "version 7.2" in host_qemu_version(inv, "h1")
    # the machine's own QEMU is untouched
    assert "version 7.2" in subprocess.run([SYSTEM_BINARY, "--version"], capture_output=True,
                                           text=True, check=True).stdout
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=120)   # back
    assert proc.returncode == 0, proc.stderr
    inv = lab.load_inventory(LabConfig().state_dir)
    assert inv.host("h2").qemu_binary == SYSTEM_BINARY
    assert "version 7.2" in host_qemu_version(inv, "h2")
