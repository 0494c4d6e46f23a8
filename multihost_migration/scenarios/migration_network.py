"""network: ping-pong migrations of a guest with a NIC (`guest_network = yes`).

Every migration carries the network checks of netcheck/ (made by the
migration itself, from the client: network downtime and losses, a TCP
connection kept, the destination's bridge learning the guest's MAC on its
tap).  On top, on each destination: a login over the network (telnet,
`guest/network.py`, the serial console only as fallback) and a file copied
to the guest and back over the network, md5-checked (`net_file_copy`).

With `heartbeat = yes` the guest-observed downtime (largest heartbeat gap
around the switchover) goes into each migration's record beside QEMU's
downtime and the network downtime (the figures of benchmarks/net_downtime.py).

Variants (cfg/subtests.cfg `network.*`): NIC model (virtio-net, e1000e),
vhost on both / one / neither side, multiqueue, a TCP stream through the
guest during migration, QEMU's self-announce off.  A host whose VM asks for
`vhost = on` without /dev/vhost-net makes the test TEST_NA on every host,
naming the device and the host, before any guest starts.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from multihost_migration.errors import MigrationError
from multihost_migration.guest.checks import (Heartbeat, HeartbeatRecord, largest_gap,
                                              read_heartbeat_log)
from multihost_migration.guest.console import ConsoleSession
from multihost_migration.guest.network import NetworkSession
from multihost_migration.migration import MigrationData, MultihostMigration
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.netdev import VHOST_DEVICE, NicConfig
from multihost_migration.qemu.vm import VM
from multihost_migration.verdicts import TestNAError

log = logging.getLogger(__name__)

HEARTBEAT_WINDOW = 300   # records on each side of the switchover compared


class NetworkMigration(MultihostMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.rounds = params.get_int("migrate_count", 2)
        self.heartbeat = params.get_bool("heartbeat", False)
        self.file_copy = params.get_bool("net_file_copy", True)

    def migration_scenario(self) -> None:
        self._require_vhost()
        src, dst = self.hosts[0], self.hosts[1]
        for _ in range(self.rounds):
            self.migrate_wait(self.vms, src, dst, self.start_work, self.check_work)
            src, dst = dst, src

    def _require_vhost(self) -> None:
        needs = any(nic.vhost for nic in (NicConfig.from_params(name, self.vm_params(name))
                                          for name in self.vms) if nic is not None)
        views = self.sync({"needs": needs, "has": os.path.exists(VHOST_DEVICE)},
                          tag="vhost-net")
        lacking = sorted(host for host, view in views.items()
                         if view["needs"] and not view["has"])
        if lacking:
            raise TestNAError(f"vhost = on needs {VHOST_DEVICE}, missing on "
                              f"{', '.join(lacking)}")

    def _vm(self, name: str) -> VM:
        vm = self.env.get_vm(name)
        if vm is None:
            raise MigrationError(f"{name} is not running on {self.hostid}")
        return vm

    def start_work(self, mig_data: MigrationData) -> None:
        """Source: the heartbeat runs (started once, it survives migrations)."""
        if not self.heartbeat:
            return
        for name in mig_data.vms_name:
            session = self._vm(name).wait_for_login(self.login_timeout)
            if session.cmd_status_output("pidof mhm-heartbeat")[0] != 0:
                Heartbeat(session).start()

    def check_work(self, mig_data: MigrationData) -> None:
        """Destination: a login over the network (vm.wait_for_login: the
        network first, `login_via = network` makes it a must) and a file both
        ways (vm.copy_files_to/from)."""
        for name in mig_data.vms_name:
            vm = self._vm(name)
            session = vm.wait_for_login(self.login_timeout)
            try:
                log.info("%s on %s: logged in (%s), kernel %s", name, self.hostid,
                         type(session).__name__, session.cmd("uname -r").strip())
                if self.file_copy and vm.config.nic is not None:
                    self._copy_both_ways(session, vm, mig_data.mig_id)
            finally:
                if isinstance(session, NetworkSession):   # the VM keeps its console's
                    session.close()

    @staticmethod
    def _copy_both_ways(session: ConsoleSession, vm: VM, mig_id: str) -> None:
        with tempfile.TemporaryDirectory(prefix="mhm-netcopy-") as tmp:
            sent, back = Path(tmp) / "sent.bin", Path(tmp) / "back.bin"
            sent.write_bytes(os.urandom(256 * 1024))
            remote = f"/tmp/netcopy-{mig_id}.bin"
            vm.copy_files_to(str(sent), remote)
            vm.copy_files_from(remote, str(back))
            if back.read_bytes() != sent.read_bytes():
                raise MigrationError(f"{vm.name}: file copied over the network came back "
                                     "different")
            session.cmd(f"rm -f {remote}")

    def post_migration(self, mig_data: MigrationData) -> None:
        """Both hosts: the heartbeat around the switchover -> guest downtime."""
        if not self.heartbeat:
            return
        mine = {}
        for vm in mig_data.vms:
            records = read_heartbeat_log(vm.heartbeat_log_path)
            window = records[-HEARTBEAT_WINDOW:] if mig_data.is_src() \
                else records[:HEARTBEAT_WINDOW]
            mine[vm.name] = [[r.host_ns, r.seq, r.guest_ns] for r in window]
        views = self.sync(mine, tag=f"heartbeat-{mig_data.mig_id}")
        if not mig_data.is_src():
            return
        for name in mig_data.vms_name:
            records = [HeartbeatRecord(*r) for host in (mig_data.src, mig_data.dst)
                       for r in (views.get(host) or {}).get(name) or []]
            if len(records) >= 2 and name in mig_data.stats:
                gap = largest_gap(records)
                mig_data.stats[name]["guest_downtime_ms"] = gap.gap_ms
                log.info("%s %s: guest-observed downtime %.1f ms", name, mig_data.mig_id,
                         gap.gap_ms)


def run(test: Any, params: Params, env: Env) -> None:
    NetworkMigration(test, params, env).run()
