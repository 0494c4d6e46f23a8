"""Scenarios on the lab: the user guide's example, run from a user directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multihost_migration.lab.demo import ROOT
from multihost_migration.lab.inventory import Inventory
from multihost_migration.status import parse
from tests.lab.test_autotest_remote import (TEST_HOSTS, guest_lab,  # noqa: F401
                                            run_autotest_remote)


def write_cfg(tmp_path: Path, *lines: str) -> Path:
    cfg = tmp_path / "tests.cfg"
    cfg.write_text("\n".join([f"include {ROOT / 'cfg' / 'base.cfg'}",
                              f"include {ROOT / 'cfg' / 'guests.cfg'}",
                              f"include {ROOT / 'cfg' / 'subtests.cfg'}",
                              "only JeOS.mhm", *lines, ""]))
    return cfg


def test_guide_example_runs_nearly_verbatim(guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    cfg = write_cfg(tmp_path, "only guide_example",
                    f"scenario_dirs = {ROOT / 'examples'}")
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=600)
    status = (tmp_path / "r" / "status.log").read_text()
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert parse(status)[-1].status == "END GOOD"
    test = json.loads((tmp_path / "r" / "results.json").read_text())["tests"][0]
    migs = {m["id"]: m for m in test["migrations"]}
    # migrate_wait(vm1+vm2), then two migrations at once, each in its thread
    assert sorted(migs) == ["mig1", "mig2", "mig3"]
    assert sorted(migs["mig1"]["vms"]) == ["vm1", "vm2"]
    assert migs["mig2"]["vms"] == ["vm1"] and migs["mig3"]["vms"] == ["vm2"]
    for mig in migs.values():
        assert all(s["status"] == "completed" for s in mig["stats"].values()), mig
    dst_log = (Path(test["logdir"]) / TEST_HOSTS[1] / "debug" / "client.DEBUG").read_text()
    assert dst_log.count("guest cmd 'killall -9 dd' -> 0") == 2


@pytest.mark.parametrize("variant, rounds, vms", [
    ("integrity.offline", 2, ["vm1"]),
    ("integrity.two_guests", 2, ["vm1", "vm2"]),
])
def test_integrity_variants_verify_every_round(guest_lab: Inventory, tmp_path: Path,  # noqa: F811
                                               variant: str, rounds: int,
                                               vms: list[str]) -> None:
    cfg = write_cfg(tmp_path, "only tcp", f"only {variant}")
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    test = json.loads((tmp_path / "r" / "results.json").read_text())["tests"][0]
    assert len(test["migrations"]) == rounds
    # ping-pong: first -> second, then second -> first
    first, second = TEST_HOSTS
    assert [(m["src"], m["dst"]) for m in test["migrations"]] == [(first, second),
                                                                   (second, first)]
    logs = "".join(p.read_text() for p in Path(test["logdir"]).glob("h*/debug/client.INFO"))
    assert logs.count("memory OK") == rounds * len(vms)
    assert logs.count("disk pattern OK") == rounds * len(vms)
