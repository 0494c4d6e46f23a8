"""virttest.utils_test.qemu.migration, served by the suite's engine.

`MultihostMigration` here IS the suite's MultihostMigration (one engine:
its sync, plan per migration, VMs, checks) with the legacy surface on top:

* `master_id()`, `_hosts_barrier()`, `vm_lock`, `mig_protocol`,
  `regain_ip_cmd`, `not_login_after_mig`, `finish_timeout`...;
* the legacy hook order: on the source the VMs start (paused with
  `paused_after_start_vm`), a login unless `start_migration_timeout` is
  set, `start_work` (or, paused: resume and wait start_migration_timeout),
  then on both hosts, once the destination's ports arrived,
  `before_migration(mig_data)`; the source migrates (`migrate_vms_src`,
  overridable) and calls `post_migration(vm, cancel_delay, mig_offline,
  dsthost, vm_ports, not_wait_for_migration, fd, mig_data)` after each VM;
  the destination checks the guest (`check_vms_dst`: running, active,
  `regain_ip_cmd` on the serial console, a login) and runs `check_work`;
* params read at each migrate() into the plan (plan.py): the legacy
  `mig_protocol`, `mig_offline`, `cancel_delay` (None: no cancel),
  `not_wait_for_migration`; the classes Fd/Exec choose their transport;
* `preprocess_env=False` still prepares the test's own disks (the ones it
  creates; an installed image is never touched either way);
* Rdma is TEST_NA without an RDMA device; `host_mig_offline` is an error
  naming it.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from multihost_migration import migration as engine
from multihost_migration.errors import ConfigError, SyncAborted
from multihost_migration.legacy import context, sync
from multihost_migration.legacy.unsupported import unsupported
from multihost_migration.legacy.vm import LegacyVM, guest_active
from multihost_migration.migration import MigrationData, MigrationThread
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.vm import VM, VMState
from multihost_migration.verdicts import TestError, TestFail, TestNAError

log = logging.getLogger(__name__)
Work = Optional[Callable[[MigrationData], None]]

#: Downtime limit (ms) for migrations of a booting guest under TCG when the
#: params set none: QEMU 7.2's TCG loses writes of a booting kernel over
#: many dirty passes (README, "Known QEMU behaviour"); the switchover then
#: follows the first pass, as the suite's own early_boot and reboot do.
TCG_BOOT_DOWNTIME_MS = "1000"
#: Params that set the migration's bandwidth: with one, no cancel_delay cap.
BANDWIDTH_PARAMS = ("migrate_parameter_max-bandwidth", "migrate_parameter_max_bandwidth")
#: cancel_bandwidth: the share of the guest's RAM that takes cancel_delay.
CANCEL_RAM_SHARE = 8
#: A peer's verdict, as its abort reason tells it (engine _blame).
_PEER_VERDICT = re.compile(r"^(TestNAError|LegacyUnsupported|TestError) on (\S+): (.*)$", re.S)


class _HostId(str):
    """The master's host id; legacy tests call it: self.master_id()."""

    def __call__(self) -> str:
        return str(self)


def _yes(value: Any) -> bool:
    return str(value).strip().lower() in ("yes", "true", "on", "1")


class MultihostMigration(engine.MultihostMigration):
    """The suite's MultihostMigration with the legacy API (module docstring)."""

    #: The transport the legacy class stands for (Fd, Exec); None: the params'.
    transport: Optional[str] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A legacy subclass's own migrate_vms_src (it calls the base, then
        looks at the migration running) is followed by the wait for a
        migration it only started (not_wait_for_migration)."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("migrate_vms_src")
        if own is not None and not getattr(own, "_legacy_wrapped", False):
            @functools.wraps(own)
            def migrate_vms_src(self: "MultihostMigration", mig_data: MigrationData) -> None:
                own(self, mig_data)
                self._finish_started(mig_data)
            migrate_vms_src._legacy_wrapped = True  # type: ignore[attr-defined]
            cls.migrate_vms_src = migrate_vms_src  # type: ignore[method-assign]

    def __init__(self, test: Any, params: Params, env: Env,
                 preprocess_env: bool = True) -> None:
        ctx = context.current("MultihostMigration")
        if _yes(params.get("host_mig_offline", "no")):
            raise ConfigError("host_mig_offline = yes (a migration saved to a file and copied "
                              "between hosts) is not served by the legacy layer")
        ctx.migration = self
        # Always: the disks this test creates must exist (legacy
        # preprocess_env=no meant "do not re-create an installed image").
        super().__init__(test, params, env, preprocess_env=True)
        self.master_id = _HostId(self.master_id)
        self.mig_protocol = str(params.get("mig_protocol", "tcp"))
        self.comm_port = int(params.get("comm_port", 13234))
        vms = max(1, len(params.objects("vms")))
        self.disk_prepare_timeout = int(params.get("disk_prepare_timeout", 160 * vms))
        self.finish_timeout = int(params.get("finish_timeout", 120 * vms))
        self.regain_ip_cmd: Optional[str] = params.get("regain_ip_cmd")
        self.not_login_after_mig: Optional[str] = params.get("not_login_after_mig")
        self.clone_master = False
        self.new_params: Optional[Params] = None
        self.vm_lock = threading.Lock()

    # -- legacy names -----------------------------------------------------------

    def _hosts_barrier(self, hosts: Sequence[str], session_id: Any, tag: str,
                       timeout: float) -> None:
        sync.hosts_barrier(self.master_id, self.hostid, hosts, session_id, tag, timeout)

    def _peer_aborted(self, err: SyncAborted) -> None:
        super()._peer_aborted(err)
        sync.release_all(err)   # a legacy barrier waiting for the peer ends now

    def preprocess_env(self) -> None:
        """Done in __init__ (the disks)."""

    def postprocess_env(self) -> None:
        """The client job stops the VMs."""

    # -- VMs ----------------------------------------------------------------------

    def _new_vm(self, name: str, role: str, mig_data: MigrationData) -> VM:
        log_dir = self.outputdir / name / f"{mig_data.mig_id}-{role}"
        return LegacyVM(name, self.vm_params_for(mig_data, name, role), log_dir,
                        self.address_of)

    def boot_vm(self, name: str) -> LegacyVM:
        """env_process: start VM `name` on this host (outside a migration)."""
        vm = LegacyVM(name, dict(self.vm_params(name)), self.outputdir / name / "boot",
                      self.address_of)
        self.env.register_vm(name, vm)
        vm.create()
        return vm

    def prepare_vms(self, mig_data: MigrationData) -> None:
        alive = {n for n in mig_data.vms_name
                 if (vm := self.env.get_vm(n)) is not None and vm.is_alive()}
        super().prepare_vms(mig_data)
        if _yes(mig_data.params.get("paused_after_start_vm", "no")):
            for vm in mig_data.vms:
                if vm.name not in alive:
                    vm.pause()

    # -- migrations ---------------------------------------------------------------

    def migrate(self, vms_name: Sequence[str], srchost: str, dsthost: str,
                start_work: Work = None, check_work: Work = None,
                params_append: Optional[dict[str, Any]] = None) -> MigrationThread:
        append = dict(params_append or {})
        if self.transport is not None:
            append["migration_protocol"] = self.transport
        paused = _yes(self.params.get("paused_after_start_vm", "no"))
        if paused and "kvm" not in str(self.params.get("accel", "")) and \
                "migrate_parameter_downtime-limit" not in self.params:
            append["migrate_parameter_downtime-limit"] = TCG_BOOT_DOWNTIME_MS
        append.update(cancel_bandwidth(self.params))

        def start(mig_data: MigrationData) -> None:
            self._legacy_start(mig_data, start_work)
        return super().migrate(vms_name, srchost, dsthost, start, check_work, append)

    def _legacy_start(self, mig_data: MigrationData, start_work: Work) -> None:
        """Source, VMs up: login, start_work, or (paused) resume and wait."""
        params = mig_data.params
        wait = params.get("start_migration_timeout")
        if wait in (None, ""):
            for vm in mig_data.vms:
                vm.wait_for_login(timeout=self.login_timeout)
        if _yes(params.get("paused_after_start_vm", "no")):
            if start_work is not None:
                raise TestNAError("Can't start work if vm is paused (paused_after_start_vm)")
            for vm in mig_data.vms:
                vm.resume()
            log.info("guest resumed, migration in %s s", wait or 0)
            time.sleep(float(wait or 0))
        elif start_work is not None:
            start_work(mig_data)

    def _hook_before(self, mig_data: MigrationData) -> None:
        """Legacy before_migration runs once the ports are exchanged."""

    def _hook_after(self, mig_data: MigrationData) -> None:
        """Legacy post_migration runs on the source after each VM's migrate."""

    def _ports_exchanged(self, mig_data: MigrationData) -> None:
        self.before_migration(mig_data)

    def before_migration(self, mig_data: MigrationData) -> None:
        """Both hosts, right before the migration (legacy hook)."""

    def post_migration(self, vm: Any, cancel_delay: Any = None,  # type: ignore[override]
                       mig_offline: Any = None, dsthost: Any = None, vm_ports: Any = None,
                       not_wait_for_migration: Any = None, fd: Any = None,
                       mig_data: Any = None) -> None:
        """Source, after each VM's migrate (legacy hook)."""

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        """Migrate every VM (the plan: transport, cancel_delay, no-wait),
        each followed by post_migration."""
        plan = mig_data.plan
        for vm in mig_data.vms:
            self._migrate_one(vm, mig_data)
            self.post_migration(vm, plan.cancel_delay, plan.offline, mig_data.dst,
                                mig_data.vm_ports, not plan.wait, None, mig_data)
        if type(self).migrate_vms_src is MultihostMigration.migrate_vms_src:
            self._finish_started(mig_data)

    def _finish_started(self, mig_data: MigrationData) -> None:
        """A migration only started (not_wait_for_migration) ends here."""
        if mig_data.plan.cancel_delay is not None:
            return
        for vm in mig_data.vms:
            if vm.is_alive() and vm.state is VMState.MIGRATING:
                vm.wait_for_migration(mig_data.plan.timeouts.migration)

    def check_vms_dst(self, mig_data: MigrationData) -> None:
        super().check_vms_dst(mig_data)
        for vm in mig_data.vms:
            if not guest_active(vm):
                raise TestFail("Guest not active after migration")
        for vm in mig_data.vms:
            if not isinstance(vm, LegacyVM):
                continue
            if self.regain_ip_cmd is not None:
                vm.wait_for_serial_login(timeout=self.login_timeout).cmd(self.regain_ip_cmd)
            if not self.not_login_after_mig:
                vm.wait_for_login(timeout=self.login_timeout)

    # -- the test ----------------------------------------------------------------

    def run(self) -> None:
        """The engine's run; a peer's TEST_NA is this host's TEST_NA too."""
        try:
            super().run()
        except SyncAborted as err:
            found = _PEER_VERDICT.match(err.reason)
            if found is None:
                raise
            kind, host, reason = found.groups()
            verdict = TestNAError if kind == "TestNAError" else TestError
            raise verdict(f"{host}: {reason}") from err


class MultihostMigrationFd(MultihostMigration):
    transport = "fd"


class MultihostMigrationExec(MultihostMigration):
    transport = "exec"


class MultihostMigrationRdma(MultihostMigration):
    """RDMA migration: TEST_NA on a host without an RDMA device."""

    def __init__(self, test: Any, params: Params, env: Env,
                 preprocess_env: bool = True) -> None:
        devices = Path("/sys/class/infiniband")
        if not devices.is_dir() or not any(devices.iterdir()):
            raise TestNAError(f"RDMA migration (mig_protocol = {params.get('mig_protocol')}) "
                              f"needs an RDMA device: {params.get('hostid')} has none "
                              f"({devices} is empty)")
        raise unsupported("MultihostMigrationRdma", "RDMA transport")


def cancel_bandwidth(params: Params) -> dict[str, str]:
    """A legacy cancel test (`cancel_delay`) counts on a migration still
    running after cancel_delay s; a small guest on a fast link is gone by
    then (the lab's 256 MiB guest under TCG: about 5 s, and only about a
    third of its RAM is sent: untouched pages travel as zero pages).
    Unless the cfg sets a bandwidth, max-bandwidth is capped so that an
    eighth of the guest's RAM takes cancel_delay (the cap stays on that
    QEMU, as a speed the test set would)."""
    delay = params.get("cancel_delay")
    if delay in (None, "") or any(key in params for key in BANDWIDTH_PARAMS):
        return {}
    try:
        mem_mib, seconds = float(params.get("mem", 256)), float(delay)
    except ValueError:
        return {}   # the plan names the bad value
    cap = max(1, int(mem_mib * 1024 * 1024 / (CANCEL_RAM_SHARE * max(seconds, 0.1))))
    log.info("cancel_delay %g s: max-bandwidth %d B/s (1/%d of a %g MiB guest's RAM "
             "takes cancel_delay)", seconds, cap, CANCEL_RAM_SHARE, mem_mib)
    return {"migrate_parameter_max-bandwidth": str(cap)}


def set_speed(vm: Any, value: Any) -> None:
    vm.monitor.migrate_set_speed(value)


def set_downtime(vm: Any, value: Any) -> None:
    vm.monitor.migrate_set_downtime(value)


from multihost_migration.legacy.migration_base import MigrationBase  # noqa: E402

__all__ = ["MigrationBase", "MigrationData", "MultihostMigration", "MultihostMigrationExec",
           "MultihostMigrationFd", "MultihostMigrationRdma", "guest_active", "set_downtime",
           "set_speed"]
