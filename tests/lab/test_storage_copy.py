"""storage_mode = copy on a lab without shared storage (issue #20).

The quick test (make test): `lab up --storage local`, copy integrity over
tcp GOOD with memory and disk verified and the mirror's figures recorded,
then the same test with storage_mode = shared stopped by preflight as
ERROR with the NFS commands and the copy alternative; the shared lab is
restored at the end, whatever happened.  The transport matrix is slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from multihost_migration.lab.inventory import Inventory
from multihost_migration.lab.local_storage import current
from tests.lab.conftest import connect
from tests.lab.test_autotest_remote import (TEST_HOSTS, guest_lab,  # noqa: F401
                                            run_autotest_remote)
from tests.lab.test_scenarios import write_cfg


def _lab_up(*options: str) -> None:
    subprocess.run([sys.executable, "-m", "multihost_migration.lab.cli", "lab", "up",
                    *options], check=True, timeout=300)


@pytest.fixture
def local_lab(guest_lab: Inventory) -> Iterator[Inventory]:  # noqa: F811
    _lab_up("--storage", "local")
    try:
        yield guest_lab
    finally:
        _lab_up()
        assert current(Path(guest_lab.state_dir)) == "shared"


def _tests(results: Path) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in json.loads((results / "results.json").read_text())["tests"]}


def _check_copy(test: dict[str, Any]) -> None:
    assert test["status"] == "GOOD", test["reason"]
    second = TEST_HOSTS[1]
    for mig in test["migrations"]:
        [copy] = mig["stats"]["vm1"]["disk_copy"]
        # the whole 64 MiB disk, plus what the guest rewrote during the mirror
        # (QEMU's job length grows with the blocks dirtied while it runs)
        assert copy["length"] >= 64 << 20 and copy["bytes"] == copy["length"], copy
        assert copy["ready_s"] is not None, copy
    log = (Path(test["logdir"]) / second / "debug" / "client.INFO").read_text()
    assert "disk pattern OK" in log and "memory OK" in log, log[-2000:]


def test_copy_on_local_storage_and_shared_mode_refused(local_lab: Inventory,
                                                       tmp_path: Path) -> None:
    first, second = TEST_HOSTS
    h1, h2 = connect(local_lab, first), connect(local_lab, second)
    try:   # really not shared
        h1.run("touch /var/lib/virt_test/images/.mhm-local-probe")
        assert h2.run("test -e /var/lib/virt_test/images/.mhm-local-probe",
                      check=False).exit_status != 0
        h1.run("rm -f /var/lib/virt_test/images/.mhm-local-probe")
    finally:
        h1.close()
        h2.close()
    cfg = write_cfg(tmp_path, "only storage_copy.copy_integrity", "only tcp", "migrate_count = 1")
    proc = run_autotest_remote(local_lab, tmp_path / "copy", options=("--cfg", str(cfg)),
                               timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:]
    [test] = _tests(tmp_path / "copy").values()
    _check_copy(test)

    proc = run_autotest_remote(local_lab, tmp_path / "shared", "only integrity.once",
                               timeout=300)
    assert proc.returncode == 2, proc.stdout[-3000:]
    text = proc.stdout + "".join(p.read_text() for p in (tmp_path / "shared").rglob(
        "preflight.txt"))
    assert "the storage is not shared, and storage_mode = shared needs it" in text, text[-3000:]
    assert "nfs-kernel-server" in text and "mount -t nfs" in text
    assert "storage_mode = copy" in text


@pytest.mark.slow
def test_copy_transport_matrix(local_lab: Inventory, tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, "only storage_copy")
    proc = run_autotest_remote(local_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=1800)
    tests = _tests(tmp_path / "r")
    assert proc.returncode == 0, proc.stdout[-3000:]
    for name, test in tests.items():
        if ".copy_integrity." in name or ".copy_multi_host." in name:
            assert test["status"] == "GOOD", (name, test["reason"])
        if ".copy_integrity." in name:
            _check_copy(test)
    assert {n.split(".")[2] for n in tests} >= {"tcp", "tls_x509", "tcp_multifd"}
