"""Three hosts in one group (`all`): the guest travels h1 -> h2 -> h3 -> h1.

In each migration one host takes no part; it must wait for the others
without deadlocking (every host makes the same sequence of migrate calls,
and the bystander joins neither the migration's sync session nor its
barriers).  The guest keeps a list of the hosts it left in /tmp: every
destination checks it, so the same guest made the whole trip.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from multihost_migration.lab import lab
from multihost_migration.lab.config import LabConfig
from multihost_migration.lab.demo import ROOT, autotest_remote_argv
from multihost_migration.lab.inventory import Inventory
from multihost_migration.status import parse
from tests.lab.test_autotest_remote import (guest_lab,  # noqa: F401
                                            no_qemu_left, user_scenario_cfg)

HOSTS = ["h1", "h2", "h3"]

SCENARIO = '''
from multihost_migration.migration import MultihostMigration
from multihost_migration.verdicts import TestFail

TRAIL = "/tmp/mhm-trail"


class Ring(MultihostMigration):
    def migration_scenario(self):
        a, b, c = self.hosts
        self.left = []
        for src, dst in ((a, b), (b, c), (c, a)):
            self.left.append(src)
            self.migrate_wait(self.vms, src, dst, self.note_departure, self.check_trail)

    def _session(self):
        return self.env.get_vm("vm1").wait_for_login(timeout=self.login_timeout)

    def note_departure(self, mig_data):
        self._session().cmd(f"echo {self.hostid} >> {TRAIL}")

    def check_trail(self, mig_data):
        trail = self._session().cmd(f"cat {TRAIL}").split()
        if trail != self.left:
            raise TestFail(f"on {self.hostid} after {mig_data.mig_id}: the guest left "
                           f"{trail}, expected {self.left}")


def run(test, params, env):
    Ring(test, params, env).run()
'''


@pytest.fixture
def three_host_lab(guest_lab: Inventory, lab_config: LabConfig) -> Iterator[Inventory]:  # noqa: F811
    """The lab with (at least) three hosts; back to its own size afterwards."""
    bigger = lab_config.hosts < len(HOSTS)
    if bigger:
        lab.up(LabConfig(hosts=len(HOSTS)))
    try:
        with no_qemu_left(HOSTS):
            yield lab.load_inventory()
    finally:
        if bigger:
            lab.up(lab_config)


def test_a_guest_travels_round_three_hosts(three_host_lab: Inventory, tmp_path: Path) -> None:
    cfg = user_scenario_cfg(tmp_path, "ring", SCENARIO)
    argv = autotest_remote_argv(three_host_lab, tmp_path / "r", ROOT / "control.srv",
                                ["all"], hosts=HOSTS)
    argv[argv.index(f"accel={three_host_lab.accel}")] = "accel=tcg"
    at = argv.index(str(ROOT / "control.srv"))
    argv[at:at] = ["--cfg", str(cfg)]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert parse((tmp_path / "r" / "status.log").read_text())[-1].status == "END GOOD"
    [test] = json.loads((tmp_path / "r" / "results.json").read_text())["tests"]
    assert test["hosts"] == HOSTS
    assert [(m["src"], m["dst"]) for m in test["migrations"]] == [
        ("h1", "h2"), ("h2", "h3"), ("h3", "h1")]
    assert all(m["stats"]["vm1"]["status"] == "completed" for m in test["migrations"])
    # each host sat one migration out, and said so
    for host, mig in (("h3", "mig1"), ("h1", "mig2"), ("h2", "mig3")):
        log = (Path(test["logdir"]) / host / "debug" / "client.INFO").read_text()
        assert f"{mig}: this host takes no part" in log, log[-2000:]
    # No barrier timeout was waited out (sync_timeout is 120 s).
    assert elapsed < 240, f"took {elapsed:.0f} s"
