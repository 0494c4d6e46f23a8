"""Fail fast: a peer busy inside its guest learns of a failure at once.

h2 runs a long command in its guest (not at a sync point) when h1 fails;
without the abort watch h2 would sit out the command's deadline (minutes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from multihost_migration.lab.inventory import Inventory
from multihost_migration.status import parse
from tests.lab.test_autotest_remote import (TEST_HOSTS, guest_lab,  # noqa: F401
                                            run_autotest_remote, user_scenario_cfg)

SCENARIO = '''
import time
from multihost_migration.migration import MultihostMigration
from multihost_migration.verdicts import TestFail


class BusyPeer(MultihostMigration):
    def migration_scenario(self):
        first, second = self.hosts
        # Migrate a booted guest: a migration during early boot can hang the
        # destination kernel under TCG (README, "Known QEMU behaviour").
        self.migrate_wait(self.vms, first, second, start_work=self._logged_in)
        if self.hostid == second:
            session = self.env.get_vm("vm1").wait_for_login(timeout=self.login_timeout)
            self.sync(tag="logged-in")
            session.cmd("sleep 300", timeout=400)       # busy, far from any sync point
        else:
            # Fail only once the peer is logged in (however slow the machine)
            # and has had ample time to be inside `sleep 300`.
            self.sync(tag="logged-in")
            time.sleep(5)
            raise TestFail("deliberate failure on the first host")

    def _logged_in(self, mig_data):
        for vm in mig_data.vms:
            vm.wait_for_login(timeout=self.login_timeout)


def run(test, params, env):
    BusyPeer(test, params, env).run()
'''


def test_a_busy_peer_stops_at_once_with_the_original_reason(guest_lab: Inventory,  # noqa: F811
                                                            tmp_path: Path) -> None:
    cfg = user_scenario_cfg(tmp_path, "busy_peer", SCENARIO)
    t0 = time.monotonic()
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=300)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0, proc.stdout[-3000:]
    entries = parse((tmp_path / "r" / "status.log").read_text())
    fails = [e for e in entries if e.status == "FAIL" and e.reason]
    reasons = " | ".join(e.reason for e in fails)
    assert "deliberate failure on the first host" in reasons, reasons
    test = json.loads((tmp_path / "r" / "results.json").read_text())["tests"][0]
    second = TEST_HOSTS[1]
    log = (Path(test["logdir"]) / second / "debug" / "client.DEBUG").read_text()
    assert "a peer aborted the test while this host was busy" in log
    # It was inside the guest command (`sleep 300`) when the abort came:
    # the command is what the stopped VM cut short.
    after = log[log.index("a peer aborted the test"):]
    assert "in cmd_status_output" in after, after[-3000:]
    # The guest's `sleep 300` was cut short: the whole run took far less.
    assert elapsed < 120, f"took {elapsed:.0f} s: the busy peer waited out its command"
