"""The full scenario set on the lab, in one autotest-remote run (make test-full).

Every scenario of cfg/scenario-set.cfg must pass with its verification;
the run prints each scenario's time, and the whole set must stay under the
20 minutes the project promises on this machine.  The set's guests have a
NIC (`guest_network = yes`): every migration of a passed test must carry
its network downtime measured from the client, and all but those of
`reboot` and `early_boot` (the guest's network is down by design there) a
TCP connection that survived it (issue #19).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

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
KNOWN_WARNINGS = ("KNOWN QEMU 7.2 TCG DEFECT",   # auto_converge (_defects.py)
                  "KNOWN QEMU 7.2.")           # cancel_states: CancelDefect.warning
#: Scenarios whose guests lose their network by design (no TCP to keep).
NO_TCP = ("reboot", "early_boot")


def network_gaps(tests: list[dict[str, Any]]) -> list[str]:
    """What the passed tests' migrations lack of the network checks."""
    bad = []
    for test in tests:
        if test["status"] not in ("GOOD", "WARN"):
            continue
        for mig in test.get("migrations", []):
            for vm, st in (mig.get("stats") or {}).items():
                where = f"{test['name']} {mig['id']} {vm} ({st.get('status')})"
                net = st.get("network")
                if not isinstance(net, dict) or \
                        not isinstance(net.get("longest_gap_ms"), (int, float)):
                    bad.append(f"{where}: no network downtime")
                elif test["name"].split(".")[0] not in NO_TCP and \
                        not (net.get("source_gone") and net.get("moved") is False) and \
                        net.get("tcp_alive_after") is not True:
                    # not moved + source_gone: a migration that did not complete
                    # and took the guest with it (7.2's cancel in postcopy, a
                    # WARN naming that defect): no successful migration
                    bad.append(f"{where}: TCP connection not kept: "
                               f"{net.get('tcp_error_after') or net.get('tcp_error')}")
    return bad


def test_network_gaps_are_found() -> None:
    def test(name: str, status: str, net: Any) -> dict[str, Any]:
        stats = {"status": "completed", **({"network": net} if net is not None else {})}
        return {"name": name, "status": status,
                "migrations": [{"id": "mig1", "stats": {"vm1": stats}}]}
    ok = {"longest_gap_ms": 200.0, "tcp_alive_after": True}
    no_tcp = {"longest_gap_ms": 200.0, "tcp_alive_after": False, "tcp_error_after": "reset"}
    lost = {**no_tcp, "source_gone": True, "moved": False}
    # a completed migration's source QEMU is gone too: its TCP still counts
    moved = {**no_tcp, "source_gone": True, "moved": True}
    assert network_gaps([test("integrity.once.tcp", "GOOD", moved)]) == [
        "integrity.once.tcp mig1 vm1 (completed): TCP connection not kept: reset"]
    assert network_gaps([test("integrity.once.tcp", "GOOD", ok),
                         test("reboot.tcp", "GOOD", no_tcp),
                         test("cancel_states.postcopy_active.tcp", "WARN", lost),
                         test("xbzrle.tcp", "FAIL", None)]) == []
    assert network_gaps([test("integrity.once.tcp", "GOOD", None),
                         test("cancel.tcp", "WARN", no_tcp)]) == [
        "integrity.once.tcp mig1 vm1 (completed): no network downtime",
        "cancel.tcp mig1 vm1 (completed): TCP connection not kept: reset"]


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
    assert not network_gaps(tests), "\n".join(network_gaps(tests))
    assert elapsed < BUDGET_S, f"the scenario set took {elapsed:.0f} s"
