"""The full scenario set on the lab, in one autotest-remote run (make test-full).

Every scenario of cfg/scenario-set.cfg must pass with its verification;
the run prints each scenario's time, and the whole set must stay under the
20 minutes the project promises on this machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from multihost_migration.lab.demo import ROOT
from multihost_migration.lab.inventory import Inventory
from multihost_migration.server.dispatch import select_tests
from tests import known_defects
from tests.lab.test_autotest_remote import guest_lab, run_autotest_remote  # noqa: F401

SCENARIO_SET = ROOT / "cfg" / "scenario-set.cfg"
BUDGET_S = 20 * 60
# QEMU 7.2 under TCG corrupts guest memory in about half of the XBZRLE
# migrations here (stale pages, or a hung guest): the scenario rightly FAILs
# then (README, "Known QEMU behaviour").  Accepted only with that signature.
KNOWN_DEFECTS = {"xbzrle.tcp.JeOS.mhm": known_defects.XBZRLE}
# A WARN (passed) is accepted only with the known-defect reason it was made for.
KNOWN_WARNINGS = ("KNOWN QEMU 7.2 TCG DEFECT",)


def test_scenario_set_covers_every_scenario_module() -> None:
    types = {t["type"] for t in select_tests(SCENARIO_SET, [])}
    modules = {p.stem for p in (ROOT / "multihost_migration" / "scenarios").glob("migration_*.py")}
    assert modules <= types, f"scenarios missing from the set: {sorted(modules - types)}"


@pytest.mark.slow
def test_full_scenario_set_passes_within_budget(guest_lab: Inventory,  # noqa: F811
                                                tmp_path: Path) -> None:
    expected = [t["shortname"] for t in select_tests(SCENARIO_SET, [])]
    t0 = time.monotonic()
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(SCENARIO_SET)),
                               timeout=BUDGET_S + 300)
    elapsed = time.monotonic() - t0
    tests = json.loads((tmp_path / "r" / "results.json").read_text())["tests"]
    table = "\n".join(f"  {t['name']:<40} {t['status']:<5} {t.get('duration', 0):6.1f} s"
                      for t in tests)
    print(f"\nscenario set: {len(tests)} tests in {elapsed:.0f} s\n{table}")
    bad = {t["name"]: t.get("reason") for t in tests if t["status"] != "GOOD" and not (
        t["status"] == "FAIL" and
        any(sign in str(t.get("reason")) for sign in KNOWN_DEFECTS.get(t["name"], ()))) and not (
        t["status"] == "WARN" and any(sign in str(t.get("reason")) for sign in KNOWN_WARNINGS))}
    assert not bad, f"{bad}\n{proc.stdout[-3000:]}"
    assert sorted(t["name"] for t in tests) == sorted(expected)
    assert elapsed < BUDGET_S, f"the scenario set took {elapsed:.0f} s"
