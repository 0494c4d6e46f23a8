"""virttest's MigrationBase: the helpers legacy capability tests mix into
their MultihostMigration (capabilities, parameters, speed, downtime, cache
size, stress start/stop, ping-pong), over vm.monitor and the guest shell.

Ping-pong migrates with the same MultihostMigration (legacy made a new one
per round, which here would start a second sync server)."""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from multihost_migration.legacy import misc
from multihost_migration.legacy.hostutils import convert_data_size
from multihost_migration.legacy.unsupported import unsupported
from multihost_migration.legacy.vm import LegacyVM
from multihost_migration.verdicts import TestError, TestFail

log = logging.getLogger(__name__)


class MigrationBase:
    """Mixin: call __setup__(test, params, env, srchost, dsthost) first."""

    test: Any
    params: Any
    env: Any

    def __setup__(self, test: Any, params: Any, env: Any, srchost: str, dsthost: str) -> None:
        self.test, self.params, self.env = test, params, env
        self.srchost, self.dsthost = srchost, dsthost
        self.vms = params.objects("vms")
        self.vm = self.vms[0]
        self.is_src = params["hostid"] == srchost
        self.pre_sub_test = params.get("pre_sub_test")
        self.post_sub_test = params.get("post_sub_test")
        self.login_before_pre_tests = params.get("login_before_pre_tests", "no")
        self.mig_bg_command = params.get("migration_bg_command",
                                         "cd /tmp; nohup ping localhost &")
        self.mig_bg_check_command = params.get("migration_bg_check_command", "pgrep ping")
        self.mig_bg_kill_command = params.get("migration_bg_kill_command", "pkill -9 ping")
        self.migration_timeout = int(params.get("migration_timeout", "1500"))
        self.login_timeout = 480
        self.stop_migrate = False
        self.migrate_count = int(params.get("migrate_count", 1))
        self.id = {"src": srchost, "dst": dsthost, "type": "file_transfer"}
        self.capabilitys = params.objects("capabilitys")
        self.capabilitys_state = [s.strip() == "enable" for s in
                                  params.objects("capabilitys_state")]
        self.parameters = params.objects("parameters")
        self.parameters_value = params.objects("parameters_value")
        self.cache_size = params.objects("cache_size")
        self.kill_bg_stress_cmd = params.get("kill_bg_stress_cmd", "killall -9 stress")
        self.bg_stress_test = params.get("bg_stress_test")
        self.check_running_cmd = params.get("check_running_cmd")
        # a bare number is MiB; `100M` carries its unit
        self.max_speed = convert_data_size(str(params.get("max_migration_speed", "1000")), "M")
        self.need_set_speed = params.get("need_set_speed", "yes") == "yes"
        self.WAIT_SHORT = 15

    def _main_vm(self) -> LegacyVM:
        vm = self.env.get_vm(self.params["main_vm"])
        if not isinstance(vm, LegacyVM):
            raise TestError(f"{self.params['main_vm']} is not running on "
                            f"{self.params.get('hostid')}")
        return vm

    # -- sub tests and workers -------------------------------------------------

    def run_pre_sub_test(self) -> None:
        if self.is_src and self.pre_sub_test:
            if self.login_before_pre_tests == "yes":
                self._main_vm().wait_for_login(timeout=self.login_timeout)
            misc.run_virt_sub_test(self.test, self.params, self.env, self.pre_sub_test)

    def run_post_sub_test(self) -> None:
        if not self.is_src and self.post_sub_test:
            misc.run_virt_sub_test(self.test, self.params, self.env, self.post_sub_test)

    def prepare_vm(self, vm_name: str) -> Any:
        migration: Any = self
        vm = migration.env.get_vm(vm_name)
        if vm is None or not vm.is_alive():
            vm = migration.boot_vm(vm_name)
        vm.wait_for_login(timeout=self.login_timeout)
        return vm

    def start_worker(self) -> None:
        if self.is_src:
            session = self._main_vm().wait_for_login(timeout=self.login_timeout)
            status, output = session.cmd_status_output(self.mig_bg_command)
            if status != 0:
                raise TestError(f"Failed to run bg cmd in guest, Output is '{output}'.")
            time.sleep(5)

    def check_worker(self) -> None:
        if not self.is_src:
            session = self._main_vm().wait_for_login(timeout=self.login_timeout)
            status, output = session.cmd_status_output(self.mig_bg_check_command)
            if status:
                raise TestFail(f"Background command not found, Output is '{output}'.")
            session.sendline(self.mig_bg_kill_command)
            session.close()

    def ping_pong_migrate(self, mig_type: Any, sync: Any, start_work: Any = None,
                          check_work: Any = None) -> None:
        migration: Any = self
        while not self.stop_migrate:
            migration.migrate_wait([self.vm], self.srchost, self.dsthost,
                                   start_work=start_work, check_work=check_work)
            sync.sync(True, timeout=self.login_timeout)
            vm = self.env.get_vm(self.params["main_vm"])
            if vm is None or not vm.is_alive() or self.migrate_count - 1 == 0:
                self.stop_migrate = True
            else:
                self.dsthost, self.srchost = self.srchost, self.dsthost
                self.is_src = not self.is_src
                self.migrate_count -= 1
                start_work = None

    # -- QEMU knobs (source) -------------------------------------------------------

    def get_migration_info(self, vm: Any) -> Any:
        return vm.monitor.info("migrate")

    def get_migration_capability(self, index: int = 0) -> None:
        if self.is_src:
            monitor = self._main_vm().monitor
            for i in range(index, len(self.capabilitys)):
                state = monitor.get_migrate_capability(self.capabilitys[i])
                if i < len(self.capabilitys_state) and state != self.capabilitys_state[i]:
                    raise TestFail(f"capability {self.capabilitys[i]} is {state}, expected "
                                   f"{self.capabilitys_state[i]}")

    def set_migration_capability(self, state: Any, capability: str) -> None:
        if self.is_src:
            self._main_vm().monitor.set_migrate_capability(state, capability)

    def get_migration_cache_size(self, index: int = 0) -> None:
        if self.is_src:
            value = self._main_vm().monitor.get_migrate_cache_size()
            if self.cache_size and str(value) != str(self.cache_size[index]):
                raise TestFail(f"xbzrle cache size is {value}, expected "
                               f"{self.cache_size[index]}")

    def set_migration_cache_size(self, value: Any) -> None:
        if self.is_src:
            self._main_vm().monitor.set_migrate_cache_size(value)

    def get_migration_parameter(self, index: int = 0) -> None:
        if self.is_src:
            monitor = self._main_vm().monitor
            for i in range(index, len(self.parameters)):
                value = monitor.get_migrate_parameter(self.parameters[i])
                if str(value) != str(self.parameters_value[i]):
                    raise TestFail(f"migration parameter {self.parameters[i]} is {value}, "
                                   f"expected {self.parameters_value[i]}")

    def set_migration_parameter(self, index: int = 0) -> None:
        if self.is_src:
            monitor = self._main_vm().monitor
            for i in range(index, len(self.parameters)):
                monitor.set_migrate_parameter(self.parameters[i], int(self.parameters_value[i]))

    def set_migration_speed(self, value: Any) -> None:
        if self.is_src:
            self._main_vm().monitor.migrate_set_speed(value)

    def set_migration_downtime(self, value: Any) -> None:
        if self.is_src:
            self._main_vm().monitor.migrate_set_downtime(value)

    def set_migration_cancel(self) -> None:
        if self.is_src:
            self._main_vm().monitor.migrate_cancel()

    def get_migration_cancelled(self) -> None:
        if self.is_src:
            status = self._main_vm().monitor.info("migrate").get("status")
            if status != "cancelled":
                raise TestFail(f"migration is {status!r}, expected 'cancelled'")

    # -- guest stress ----------------------------------------------------------------

    def clean_up(self, kill_bg_cmd: str, vm: Any) -> None:
        session = vm.wait_for_login(timeout=self.login_timeout)
        status, output = session.cmd_status_output(kill_bg_cmd)
        if status:
            raise TestFail(f"Failed to kill the background test in guest: {output}")
        session.close()

    def start_stress(self) -> None:
        if not self.bg_stress_test:
            raise unsupported("MigrationBase.start_stress", "bg_stress_test is not set")
        session = self._main_vm().wait_for_login(timeout=self.login_timeout)
        session.cmd(self.bg_stress_test)
        check: Optional[str] = self.check_running_cmd
        if check and not misc.wait_for(lambda: session.cmd_status(check) == 0, 360):
            raise TestFail(f"Failed to start '{self.bg_stress_test}' in guest.")

    def install_stressapptest(self) -> None:
        session = self._main_vm().wait_for_login(timeout=self.login_timeout)
        session.cmd(self.params.get("stressapptest_insatll_cmd", "stressapptest --help"),
                    timeout=600)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise unsupported(f"MigrationBase.{name}")
