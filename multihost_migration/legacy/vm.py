"""The VM as legacy tests drive it: the suite's VM plus the virttest names
(vm.monitor, wait_for_login(nic_index=...), wait_for_serial_login,
is_paused, reboot, get_address, copy_files_to/from (a directory too),
verify_alive, wait_for_migration that leaves a running migration alone at
its timeout).  Login and copy are the suite's VM's (network when the
guest has a NIC).  Anything else a legacy
test asks of a VM is LegacyUnsupported naming `vm.<name>` and the line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from multihost_migration.errors import GuestError, LoginError, MigrationTimeout, VMError
from multihost_migration.legacy import filecopy
from multihost_migration.legacy.monitor import LegacyMonitor
from multihost_migration.legacy.session import LegacySession
from multihost_migration.legacy.unsupported import unsupported
from multihost_migration.qemu import settings as mig_settings
from multihost_migration.qemu.stats import TERMINAL_STATUSES, MigrationStats
from multihost_migration.qemu.vm import VM, VMState
from multihost_migration.verdicts import TestNAError

log = logging.getLogger(__name__)

#: Params that may carry a guest's network address (set when the guest has
#: a network: the cfg, or the lab's guest network).
ADDRESS_PARAMS = ("guest_ip", "ip_address", "vm_ip")
NO_NETWORK = "guest has no network (needs the lab guest network)"
BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


class LegacyVM(VM):
    """A VM with the legacy (virttest) API on top."""

    _monitor: Optional[LegacyMonitor] = None

    @property
    def monitor(self) -> LegacyMonitor:
        if self._monitor is None:
            self._monitor = LegacyMonitor(self)
        return self._monitor

    def event_log(self) -> Any:
        """The QMP events of this QEMU (what vm.monitor.get_event reads)."""
        return self._channel("events").events

    # -- sessions -------------------------------------------------------------

    def wait_for_login(self, timeout: float = 240.0,  # type: ignore[override]
                       via: Optional[str] = None, *, nic_index: int = 0,
                       internal_timeout: Any = None, serial: Any = None,
                       restart_network: bool = False, username: Any = None,
                       password: Any = None) -> LegacySession:
        """A shell on the guest as virttest gives it: the suite's login (over
        the guest's network when it has a NIC, else the serial console);
        `serial` asks for the console; `nic_index` is accepted (one NIC)."""
        shell = super().wait_for_login(float(timeout), "serial" if serial else via)
        return LegacySession(shell, self.name)

    def wait_for_serial_login(self, timeout: float = 240.0, **kwargs: Any) -> LegacySession:
        return LegacySession(super().wait_for_login(float(timeout), "serial"), self.name)

    login = wait_for_login  # type: ignore[assignment]
    serial_login = wait_for_serial_login

    # -- state ------------------------------------------------------------------

    def is_paused(self) -> bool:
        return self.query_status() == "paused"

    def is_dead(self) -> bool:
        return not self.is_alive()

    def verify_alive(self) -> None:
        if not self.is_alive():
            raise VMError(f"{self.name}: QEMU is not running\n{self.log_tail()}")

    def destroy(self, gracefully: bool = True, timeout: float = 30.0,
                free_mac_addresses: bool = True, **_: Any) -> None:
        super().destroy(gracefully=gracefully, timeout=timeout)

    def wait_for_migration(self, timeout: float = 300.0,
                           waiter: Any = None) -> MigrationStats:
        """Until the outgoing migration ends; at `timeout` MigrationTimeout
        (virt_vm.VMMigrateTimeoutError) with the migration still running,
        as legacy tests expect (they change a knob and wait again)."""
        deadline = time.monotonic() + float(timeout)
        while True:
            stats = self.migration_stats()
            if stats.status in TERMINAL_STATUSES or stats.status == "none":
                break
            if time.monotonic() >= deadline:
                raise MigrationTimeout(self.name, f"not finished after {float(timeout):g} s "
                                       "(still running)", stats.status, None, stats.as_dict())
            time.sleep(0.2)
        if self.state is VMState.MIGRATING:
            return super().wait_for_migration(max(5.0, deadline - time.monotonic()), waiter)
        return stats

    def apply_migration_settings(self, settings: mig_settings.MigrationSettings
                                 ) -> mig_settings.AppliedSettings:
        """The plan's settings on top of what the legacy test set itself
        through vm.monitor (a capability on, a speed, a downtime): those
        stay, where the engine would return them to QEMU's launch values."""
        on = tuple(name for name, state in mig_settings.query_capabilities(
            self._qemu("apply_migration_settings")).items() if state)
        kept = replace(settings, capabilities=tuple(dict.fromkeys(settings.capabilities + on)))
        self._default_parameters = dict(self.qmp("query-migrate-parameters") or {})
        return super().apply_migration_settings(kept)

    # -- reboot -----------------------------------------------------------------

    def reboot(self, session: Any = None, method: str = "shell", nic_index: int = 0,
               timeout: float = 240.0, serial: bool = False) -> LegacySession:
        """Reboot the guest (`reboot` in its shell, or QMP system_reset) and
        log in again once a new boot (a new boot_id) runs."""
        timeout = float(timeout)
        shell = session if isinstance(session, LegacySession) else self.wait_for_login(timeout)
        old = shell.cmd_output(BOOT_ID, timeout=30).strip()
        log.info("%s: reboot (%s), boot id %s", self.name, method, old)
        if method == "shell":
            shell.sendline("reboot")
        elif method == "system_reset":
            self.qmp("system_reset")
        else:
            raise unsupported(f"vm.reboot(method={method!r})")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(1.0)
            try:
                new = self.wait_for_login(max(5.0, deadline - time.monotonic()))
                now = new.cmd_output(BOOT_ID, timeout=10).strip()
            except GuestError as err:
                log.debug("%s: not back yet: %s", self.name, err)
                continue
            if now and now != old:
                log.info("%s: rebooted, boot id %s", self.name, now)
                return new
        raise LoginError(self.name, f"no new boot within {timeout:g} s after reboot ({method})")

    # -- network ------------------------------------------------------------------

    def get_address(self, index: int = 0) -> str:
        """The guest's network address: its NIC's on the guest segment
        (`guest_network = yes`), or one the params name; TEST_NA while the
        guest has none."""
        if self.config.nic is not None:
            return super().get_address(index)
        for key in ADDRESS_PARAMS:
            for name in (f"{key}_nic{index + 1}", key):
                value = self.params.get(name)
                if value:
                    return str(value)
        raise TestNAError(f"{self.name}: {NO_NETWORK}")

    def copy_files_to(self, host_path: Any, guest_path: str,
                      *args: Any, timeout: float = 600.0, **kwargs: Any) -> None:
        """A host file or directory (recursively, as scp -r) into the guest
        over its network (legacy/filecopy.py); TEST_NA without one."""
        self._need_network("copy_files_to")
        filecopy.copy_to(self, Path(host_path), guest_path, float(timeout))

    def copy_files_from(self, guest_path: str, host_path: Any,
                        *args: Any, timeout: float = 600.0, **kwargs: Any) -> None:
        """A guest file to the host over the guest's network."""
        self._need_network("copy_files_from")
        filecopy.copy_from(self, guest_path, Path(host_path), float(timeout))

    def _need_network(self, call: str) -> None:
        if self.config.nic is None:
            raise TestNAError(f"{self.name}: vm.{call} copies over the guest's network: "
                              f"{NO_NETWORK}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise unsupported(f"vm.{name}")


def guest_active(vm: VM) -> bool:
    """utils_test.qemu.guest_active: the guest runs (QEMU status running)."""
    return vm.query_status() == "running"
