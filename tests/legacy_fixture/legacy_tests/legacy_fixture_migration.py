"""A legacy-style multi-host test (written for this suite's tests, in the
autotest/virttest idiom): exercises the legacy names on the lab."""
import logging
import time

import six
from autotest.client.shared import error, utils
from autotest.client.shared.syncdata import SyncData
from virttest import env_process, qemu_migration, remote, utils_misc, utils_test, virt_vm
from virttest.utils_test.qemu import migration


@error.context_aware
def run(test, params, env):
    mig_protocol = params.get("mig_protocol", "tcp")
    base = {"fd": migration.MultihostMigrationFd,
            "exec": migration.MultihostMigrationExec}.get(mig_protocol,
                                                          migration.MultihostMigration)

    class FixtureMigration(base):
        def __init__(self, test, params, env):
            super(FixtureMigration, self).__init__(test, params, env, False)
            self.srchost, self.dsthost = self.params.get("hosts")[:2]
            self.is_src = params["hostid"] == self.srchost
            self.vm = params["main_vm"]
            self.id = {"src": self.srchost, "dst": self.dsthost, "type": "fixture"}
            self.before = 0

        def before_migration(self, mig_data):
            self.before += 1
            if self.is_src:
                vm = env.get_vm(self.vm)
                qemu_migration.set_speed(vm, "512M")
                migration.set_downtime(vm, 1)
                vm.monitor.set_migrate_capability(True, "events")
                assert vm.monitor.get_migrate_capability("events") is True

        def migration_scenario(self):
            sync = SyncData(self.master_id(), self.hostid, self.hosts, self.id,
                            self.sync_server)
            got = sync.sync({"port": utils_misc.find_free_port(5200, 5300)}, timeout=60)
            assert sorted(got) == sorted(self.hosts)
            if self.hostid == self.master_id():
                params["start_vm"] = "yes"      # the cfg says no: this host boots it now
                env_process.process(test, params, env, env_process.preprocess_image,
                                    env_process.preprocess_vm)
                vm = env.get_vm(self.vm)
                vm.monitor.clear_event("RESET")
                vm.monitor.cmd("system_reset")
                if not utils_misc.wait_for(lambda: vm.monitor.get_event("RESET"), 30):
                    raise error.TestFail("no RESET event")
                assert isinstance(vm.monitor.info("status")["status"], six.string_types)
                assert utils_test.qemu.guest_active(vm) and not vm.is_paused()
            self._hosts_barrier(self.hosts, self.id, "booted", 240)

            def start_worker(mig_data):
                vm = mig_data.vms[0]
                session = vm.wait_for_login(timeout=self.login_timeout)
                session.sendline("nohup sleep 100000 >/dev/null 2>&1 &")
                status, output = session.cmd_status_output("echo fixture-ok")
                assert status == 0 and "fixture-ok" in output
                assert session.cmd_status("false") == 1
                assert session.cmd_output("echo 42").strip() == "42"
                try:
                    vm.get_address()
                except error.TestNAError as err:
                    logging.info("as expected: %s", err)

            def check_worker(mig_data):
                if not self.is_src:
                    vm = env.get_vm(self.vm)
                    session = vm.wait_for_serial_login(timeout=self.login_timeout)
                    session.cmd("killall -0 sleep")
                    session.close()

            self.migrate_wait([self.vm], self.srchost, self.dsthost, start_worker,
                              check_worker)
            params["cancel_delay"] = None
            self.migrate_wait([self.vm], self.dsthost, self.srchost)
            if self.is_src:   # the guest is back here
                vm = env.get_vm(self.vm)
                try:
                    vm.wait_for_migration(1)
                except virt_vm.VMMigrateTimeoutError:
                    pass
                session = vm.reboot(method="system_reset", timeout=120)
                session.close()
            assert self.before == 2, self.before

    error.context("legacy fixture", logging.info)
    stat = utils.Statistic()
    stat.record(utils.convert_data_size("1K"))
    bg = utils.InterruptedThread(time.sleep, (0.1,))
    bg.start()
    bg.join()
    assert issubclass(remote.LoginError, Exception)
    mig = FixtureMigration(test, params, env)
    mig.run()
