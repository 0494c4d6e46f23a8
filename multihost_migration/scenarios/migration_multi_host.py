"""The user guide's scenario: a guest busy with `dd` migrates between hosts.

Before migration, on the source: log in on the serial console and start `dd`.
After migration, on the destination: the same `dd` must still be running (the
guest's processes survived), then it is killed.  The source QEMU must be in
`postmigrate` and is stopped; the destination guest must be `running`.
"""

from __future__ import annotations

from typing import Any

from multihost_migration.migration import MigrationData, MultihostMigration
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.verdicts import TestFail


def run(test: Any, params: Params, env: Env) -> None:
    class TestMultihostMigration(MultihostMigration):
        def migration_scenario(self) -> None:
            srchost = self.params.get("hosts")[0]
            dsthost = self.params.get("hosts")[1]
            vms = self.vms

            def worker(mig_data: MigrationData) -> None:
                for name in vms:
                    vm = env.get_vm(name)
                    session = vm.wait_for_login(timeout=self.login_timeout)
                    session.sendline("nohup dd if=/dev/zero of=/dev/null >/dev/null 2>&1 &")
                    session.cmd("killall -0 dd")

            def check_worker(mig_data: MigrationData) -> None:
                for name in vms:
                    vm = env.get_vm(name)
                    session = vm.wait_for_login(timeout=self.login_timeout)
                    status, output = session.cmd_status_output("killall -0 dd")
                    if status != 0:
                        raise TestFail(f"{name}: dd started on {mig_data.src} is not running "
                                       f"on {mig_data.dst} after migration: {output.strip()}")
                    session.cmd("killall -9 dd")

            self.migrate_wait(vms, srchost, dsthost, worker, check_worker)

    TestMultihostMigration(test, params, env).run()
