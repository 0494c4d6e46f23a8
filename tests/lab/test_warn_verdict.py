"""WARN end to end: a scenario that passes with a warning on one host.

The job passes (exit status 0) with the verdict WARN, and every result file
says why: status.log, results.json, JUnit (a passed testcase whose output
names the warning) and report.html.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from multihost_migration.lab.inventory import Inventory
from multihost_migration.status import parse
from tests.lab.test_autotest_remote import (TEST_HOSTS, guest_lab,  # noqa: F401
                                            run_autotest_remote, user_scenario_cfg)

SCENARIO = '''
from multihost_migration.migration import MultihostMigration


class Warned(MultihostMigration):
    def migration_scenario(self):
        first, second = self.hosts
        self.migrate_wait(self.vms, first, second)
        if self.hostid == second:
            self.warn("vm1 on " + second + ": clock not checked (deliberate warning)")


def run(test, params, env):
    Warned(test, params, env).run()
'''


def test_a_warning_passes_the_job_and_reaches_every_result_file(
        guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    cfg = user_scenario_cfg(tmp_path, "warned", SCENARIO)
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=300)
    results = tmp_path / "r"
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "verdict: WARN" in proc.stdout
    first, second = TEST_HOSTS
    message = f"vm1 on {second}: clock not checked (deliberate warning)"
    entries = parse((results / "status.log").read_text())
    assert entries[-1].status == "END WARN"
    assert any(e.status == "WARN" and message in e.reason for e in entries)
    [test] = json.loads((results / "results.json").read_text())["tests"]
    assert test["status"] == "WARN"
    assert test["host_results"][first]["status"] == "GOOD"
    assert test["host_results"][second] == {"status": "WARN", "reason": message}
    case = ET.parse(results / "junit.xml").getroot().find(".//testcase")
    assert case is not None
    assert case.find("failure") is None and case.find("error") is None
    assert message in ET.tostring(case, encoding="unicode")
    assert message in (results / "report.html").read_text()
