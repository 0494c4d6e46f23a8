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
from multihost_migration.errors import MigrationError
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.vm import VM
from multihost_migration.verdicts import TestFail


def run(test: Any, params: Params, env: Env) -> None:
    def running(name: str) -> VM:
        vm = env.get_vm(name)
        if vm is None:
            raise MigrationError(f"{name} is not running on {params.get('hostid')}")
        return vm

    class TestMultihostMigration(MultihostMigration):
        def migration_scenario(self) -> None:
            srchost, dsthost = self.hosts[0], self.hosts[1]
            vms = self.vms

            def worker(mig_data: MigrationData) -> None:
                for name in vms:
                    session = running(name).wait_for_login(timeout=self.login_timeout)
                    session.sendline("nohup dd if=/dev/zero of=/dev/null >/dev/null 2>&1 &")
                    session.cmd("killall -0 dd")

            def check_worker(mig_data: MigrationData) -> None:
                for name in vms:
                    session = running(name).wait_for_login(timeout=self.login_timeout)
                    status, output = session.cmd_status_output("killall -0 dd")
                    if status != 0:
                        raise TestFail(f"{name}: dd started on {mig_data.src} is not running "
                                       f"on {mig_data.dst} after migration: {output.strip()}")
                    session.cmd("killall -9 dd")

            self.migrate_wait(vms, srchost, dsthost, worker, check_worker)

    TestMultihostMigration(test, params, env).run()
