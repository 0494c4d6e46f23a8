"""A legacy-style multi-host test (written for this suite's tests, in the
autotest/virttest idiom): exercises the legacy names on the lab."""
import logging
import os
import socket
import time

import six
from autotest.client.shared import error, utils
from autotest.client.shared.barrier import listen_server
from autotest.client.shared.syncdata import SyncData
from virttest import (env_process, qemu_migration, qemu_monitor, remote, utils_misc,
                      utils_test, virt_vm)
from virttest.utils_test.qemu import migration

from provider import fixture_helper


def check_host_names():
    """Names that need no VM."""
    for name in ("TestFail", "TestError", "TestNAError", "TestWarn", "JobError"):
        assert issubclass(getattr(error, name), Exception), name
    assert utils.run("true").exit_status == 0
    assert utils.hash_file(__file__) == utils.hash_file(__file__, method="md5")
    assert len(utils_misc.generate_random_string(12)) == 12
    stat = utils.Statistic()
    stat.record(utils.convert_data_size("1K"))
    bg = utils.InterruptedThread(time.sleep, (0.1,))
    bg.start()
    bg.join()
    assert issubclass(remote.LoginError, Exception)
    assert issubclass(qemu_monitor.QMPCmdError, qemu_monitor.MonitorError)


def check_vm(vm, params):
    """The master's freshly booted VM: monitor, events, state."""
    assert vm.name == params["main_vm"] and vm.params["vms"] == params["vms"]
    assert vm.is_alive()
    # booted first: a reset in the first instants of a TCG boot has left
    # the guest silent (no console output) once in 7 runs
    vm.wait_for_login(timeout=120).close()
    vm.monitor.clear_event("RESET")
    vm.monitor.cmd("system_reset")
    if not utils_misc.wait_for(lambda: vm.monitor.get_event("RESET"), 30):
        raise error.TestFail("no RESET event")
    assert isinstance(vm.monitor.info("status")["status"], six.string_types)
    try:
        vm.monitor.cmd("mhm-fixture-no-such-command")
    except qemu_monitor.MonitorError as err:
        logging.info("as expected: %s", err)
    else:
        raise error.TestFail("an unknown QMP command passed")
    vm.pause()
    assert vm.is_paused()
    vm.resume()
    assert utils_test.qemu.guest_active(vm) and not vm.is_paused()


def check_guest_network(vm, outdir):
    """Login, address, a directory copied in (as scp -r), a file back."""
    session = vm.wait_for_login(timeout=120)
    assert vm.get_address()
    deps = fixture_helper.deps_dir()
    vm.copy_files_to(deps, "/tmp")
    guest_file = "/tmp/%s/src/hello.txt" % os.path.basename(deps)
    back = os.path.join(outdir, "hello.back")
    vm.copy_files_from(guest_file, back)
    if utils.hash_file(back) != utils.hash_file(os.path.join(deps, "src", "hello.txt")):
        raise error.TestFail("the copied file changed on its way")
    host_time, guest_time = utils_test.get_time(session, "date +%s", r"(\d+)", "%s")
    assert abs(host_time - guest_time) < 3600, (host_time, guest_time)
    session.close()


@error.context_aware
def run(test, params, env):
    mig_protocol = params.get("mig_protocol", "tcp")
    base = {"fd": migration.MultihostMigrationFd,
            "exec": migration.MultihostMigrationExec,
            "rdma": migration.MultihostMigrationRdma}.get(mig_protocol,
                                                          migration.MultihostMigration)

    class FixtureMigration(base, migration.MigrationBase):
        def __init__(self, test, params, env):
            super(FixtureMigration, self).__init__(test, params, env, False)
            srchost, dsthost = self.params.get("hosts")[:2]
            self.__setup__(test, params, env, srchost, dsthost)
            self.login_timeout = int(params.get("login_timeout", 120))
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

        def link_check(self, sync):
            """autotest's listen_server: the other host sends to the master."""
            if self.hostid == self.master_id():
                server = listen_server(port=utils_misc.find_free_port(5200, 5300))
                sync.sync(server.socket.getsockname()[1], timeout=60)
                conn = server.socket.accept()[0]
                data = conn.recv(64)
                conn.close()
                server.close()
                assert data == b"fixture", data
            else:
                port = sync.sync(timeout=60)[self.master_id()]
                sock = socket.create_connection((self.master_id(), port), timeout=30)
                sock.sendall(b"fixture")
                sock.close()

        def boot_on_master(self):
            params["start_vm"] = "yes"      # the cfg says no: this host boots it now
            env_process.process(test, params, env, env_process.preprocess_image,
                                env_process.preprocess_vm)
            vm = env.get_vm(self.vm)
            check_vm(vm, params)
            utils_test.run_virt_sub_test(test, params, env, "legacy_fixture_sub")

        def migration_scenario(self):
            sync = SyncData(self.master_id(), self.hostid, self.hosts, self.id,
                            self.sync_server)
            first = self.hostid == self.params.get("hosts")[0]
            assert params["fixture_role"] == ("first" if first else "second"), params
            self.link_check(sync)
            if self.hostid == self.master_id():
                self.boot_on_master()
            self._hosts_barrier(self.hosts, self.id, "booted", 240)

            def start_worker(mig_data):
                vm = mig_data.vms[0]
                check_guest_network(vm, test.outputdir)
                session = vm.wait_for_serial_login(timeout=self.login_timeout)
                status, output = session.cmd_status_output("echo fixture-ok")
                assert status == 0 and "fixture-ok" in output
                assert session.cmd_status("false") == 1
                assert session.cmd_output("echo 42").strip() == "42"
                session.cmd("true")
                self.start_worker()         # migration_bg_command, from the cfg

            def check_worker(mig_data):
                self.check_worker()         # migration_bg_check/kill_command

            self.migrate_wait([self.vm], self.srchost, self.dsthost, start_worker,
                              check_worker)
            params["cancel_delay"] = None
            self.migrate_wait([self.vm], self.dsthost, self.srchost)
            if self.hostid == self.srchost:   # the guest is back here
                vm = env.get_vm(self.vm)
                try:
                    vm.wait_for_migration(1)
                except virt_vm.VMMigrateTimeoutError:
                    pass
                session = vm.reboot(method="system_reset", timeout=120)
                session.sendline("echo rebooted")
                session.close()
                vm.destroy(gracefully=False)
                assert not vm.is_alive()
            assert self.before == 2, self.before

    error.context("legacy fixture", logging.info)
    check_host_names()
    mig = FixtureMigration(test, params, env)
    mig.run()
