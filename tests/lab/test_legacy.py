"""Legacy (autotest/virttest style) tests on the lab: our own legacy-style
module and cfg (tests/legacy_fixture/), the legacy layer switched on by
detection, every name of the fixture served by the engine (issue #17's
list: error, utils, SyncData, barrier.listen_server, the migration classes
and MigrationBase, utils_test, utils_misc, virt_vm, remote, qemu_monitor,
env_process, data_dir through the checkout's provider package, the VM,
monitor and session methods, login and file copy over the guest network,
the legacy params and `_hostN` overrides, migration_bg_command)."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihost_migration.lab.demo import ROOT
from multihost_migration.lab.inventory import Inventory
from multihost_migration.lab.legacy_run import is_test_verdict
from multihost_migration.status import parse
from tests.lab.test_autotest_remote import guest_lab, run_autotest_remote  # noqa: F401

FIXTURE = ROOT / "tests" / "legacy_fixture"


def legacy_cfg(tmp_path: Path, *lines: str) -> Path:
    cfg = tmp_path / "legacy-user.cfg"
    cfg.write_text("\n".join([f"include {ROOT / 'cfg' / 'legacy.cfg'}",
                              f"include {FIXTURE / 'fixture.cfg'}",
                              f"scenario_dirs = {FIXTURE / 'legacy_tests'}", *lines, ""]))
    return cfg


def verdicts(results: Path) -> dict[str, str]:
    return {e.operation: e.status for e in parse((results / "status.log").read_text())
            if is_test_verdict(e)}


def test_legacy_fixture_tcp_online(guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    cfg = legacy_cfg(tmp_path, "only tcp", "only online")
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert list(verdicts(tmp_path / "r").values()) == ["GOOD"], proc.stdout[-3000:]


@pytest.mark.slow
def test_legacy_fixture_every_transport_online_and_offline(
        guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    cfg = legacy_cfg(tmp_path)
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=1200)
    found = verdicts(tmp_path / "r")
    rdma = [test for test in found if ".rdma." in test]
    assert len(found) == 7 and len(rdma) == 1, found
    assert found.pop(rdma[0]) == "TEST_NA", found     # no RDMA device in the lab
    assert set(found.values()) == {"GOOD"}, found
    assert proc.returncode == 0
