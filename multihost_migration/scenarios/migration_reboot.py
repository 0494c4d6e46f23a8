"""Migration while the guest reboots (variant `reboot`).

Source: log in, note the guest's boot id (/proc/sys/kernel/random/boot_id),
write a disk pattern (`disk_check_mib` MiB on /dev/vda) and `sync`, then send
`reboot_command` (default `reboot`) and start the migration as soon as the
console shows the reboot under way (`reboot_migrate_on`, default: busybox
init's "Requesting system reboot", a second before the reset, or the
kernel's "reboot: Restarting system").  The migration thus spans the end of
the shutdown, the system reset and the start of the new boot.  The cfg
  - caps the bandwidth (32 MiB/s) so that the bulk pass takes ~2 s and the
    reset, a second after that message, falls inside the migration (the
    log says where the reset happened; it was the source in every run here);
  - sets a downtime-limit of 4 s (128 MB at 32 MiB/s: below the 256 MiB of
    RAM, so the bulk pass runs live) so that QEMU stops the guest right
    after the bulk pass: under TCG more live passes lose writes of the
    booting kernel (see migration_early_boot); the downtime stays ~0.1 s;
  - appends `loglevel=7` to the tiny guest's kernel command line, so that
    the new boot lasts 5-12 s under TCG, longer than the migration even on
    the busy 2-core lab machine.
(QEMU is started without -no-reboot, so a guest reset restarts the guest:
SeaBIOS loads the -kernel/-initrd again; the tiny guest's busybox init
reboots on `reboot`.)

Destination: the reboot must finish there, as a new boot: login works, the
boot id differs from the one noted before the reboot, the uptime is smaller
than the time elapsed since the reboot command (+ `reboot_uptime_slack`,
default 2 s; host clocks are compared: the same clock in the lab, NTP on
real hosts), and the disk pattern written before the reboot reads back.
From the serial logs: the source's, after the reboot command, has no login
prompt (the reboot did not finish before the migration); the destination's
has it.  Where the reset itself happened (source or destination) is logged.

If `reboot_migrate_on` does not show within `reboot_wait_timeout` (default
30 s), the migration starts anyway and the checks tell what happened; e.g.
`reboot_command = true` (no reboot) FAILs on the unchanged boot id.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from multihost_migration.errors import GuestCheckError, ShellCommandError
from multihost_migration.guest.checks import DiskPattern
from multihost_migration.migration import MigrationData, MultihostMigration
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.scenarios._boot import (DEFAULT_BOOT_DONE, log_size,
                                                 login_after_boot, read_log, summaries,
                                                 tail, wait_for_serial)
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

DEFAULT_MIGRATE_ON = r"Requesting system reboot|reboot: Restarting system"
#: The kernel's last word before the reset: where it shows, the reset happened.
RESET_MARKER = r"reboot: Restarting system"


def reboot_problems(vm: str, mig_id: str, src: str, dst: str, before: dict[str, Any],
                    after: dict[str, Any], src_log: dict[str, Any],
                    dst_log: dict[str, Any], slack: float) -> list[str]:
    """Why the guest did not reboot across migration `mig_id` ([] if it did).

    `before`: boot_id, t_reboot (host epoch of the reboot command) and
    under_way (seconds until the console showed the reboot, None if it did
    not) on the source; `after`: boot_id, uptime, t_login (host epoch) on the
    destination; the logs: serial_summary of the source's console after the
    reboot command and of the destination's."""
    where = f"{vm}, {mig_id} {src}->{dst}"
    problems = []
    if before["under_way"] is None:
        problems.append(f"{where}: the migration did not start during a reboot: the "
                        f"source console showed no sign of one after the reboot command "
                        f"(source log: {src_log['tail']!r})")
    if after["boot_id"] == before["boot_id"]:
        problems.append(f"{where}: no new boot on {dst}: boot_id is still "
                        f"{before['boot_id']} (the guest did not reboot)")
    elapsed = after["t_login"] - before["t_reboot"]
    if after["uptime"] > elapsed + slack:
        problems.append(f"{where}: uptime {after['uptime']:.2f} s at login on {dst}, yet "
                        f"the reboot command was sent {elapsed:.2f} s earlier on {src} "
                        f"(slack {slack:g} s): this boot began before the reboot")
    if src_log["booted"]:
        problems.append(f"{where}: the reboot finished on the source {src} before the "
                        f"migration ended: its console shows the login prompt after the "
                        f"reboot command (source log: {src_log['tail']!r})")
    if not dst_log["booted"]:
        problems.append(f"{where}: no login prompt on the destination {dst}'s console "
                        f"(destination log: {dst_log['tail']!r})")
    return problems


class RebootMigration(MultihostMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.reboot_command = str(params.get("reboot_command", "reboot"))
        self.migrate_on = str(params.get("reboot_migrate_on", DEFAULT_MIGRATE_ON))
        self.reboot_wait = params.get_float("reboot_wait_timeout", 30.0)
        self.slack = params.get_float("reboot_uptime_slack", 2.0)
        self.done_pattern = str(params.get("boot_done_pattern", DEFAULT_BOOT_DONE))
        self.disk_mib = params.get_int("disk_check_mib", 4)
        self.disk_seed = params.get_int("disk_check_seed", 1234)
        self.before: dict[str, dict[str, Any]] = {}   # source: per VM
        self.after: dict[str, dict[str, Any]] = {}    # destination: per VM
        self.offsets: dict[str, int] = {}             # source: serial log size at reboot

    def start_work(self, mig_data: MigrationData) -> None:
        """Source: note the boot, write the disk pattern, reboot; return
        (and so migrate) once the console shows the reboot under way."""
        for vm in mig_data.vms:
            session = vm.wait_for_login(timeout=self.login_timeout)
            boot_id = session.cmd("cat /proc/sys/kernel/random/boot_id").strip()
            uptime = float(session.cmd("cat /proc/uptime").split()[0])
            if self.disk_mib:
                DiskPattern(session).write(self.disk_seed, self.disk_mib)
            session.cmd("sync")
            self.offsets[vm.name] = log_size(vm.serial_log_path)
            self.before[vm.name] = {"boot_id": boot_id, "uptime": uptime,
                                    "t_reboot": time.time(), "under_way": None}
            session.sendline(self.reboot_command)
            log.info("%s on %s: boot_id %s, uptime %.2f s, disk pattern of %d MiB "
                     "written; sent %r", vm.name, self.hostid, boot_id, uptime,
                     self.disk_mib, self.reboot_command)
        for vm in mig_data.vms:
            seen = wait_for_serial(vm, self.migrate_on, self.reboot_wait,
                                   self.offsets[vm.name])
            if seen is None:
                log.warning("%s on %s: no %r on the console within %.0f s of %r; "
                            "migrating anyway (last output: %r)", vm.name, self.hostid,
                            self.migrate_on, self.reboot_wait, self.reboot_command,
                            tail(read_log(vm.serial_log_path, self.offsets[vm.name])))
            else:
                self.before[vm.name]["under_way"] = seen
                log.info("%s on %s: reboot under way (%r) %.1f s after %r; migrating now",
                         vm.name, self.hostid, self.migrate_on, seen, self.reboot_command)

    def check_work(self, mig_data: MigrationData) -> None:
        """Destination: the reboot ends here; login, boot id, uptime, disk."""
        for vm in mig_data.vms:
            where = f"{vm.name} on {self.hostid} after {mig_data.mig_id}"
            session = login_after_boot(vm, mig_data, self.login_timeout, where)
            try:
                boot_id = session.cmd("cat /proc/sys/kernel/random/boot_id").strip()
                uptime = float(session.cmd("cat /proc/uptime").split()[0])
                t_login = time.time()
                if self.disk_mib:
                    DiskPattern(session).verify(self.disk_seed, self.disk_mib)
            except (ShellCommandError, GuestCheckError) as err:
                raise TestFail(f"{where}: after the reboot: {err}") from err
            self.after[vm.name] = {"boot_id": boot_id, "uptime": uptime, "t_login": t_login}
            log.info("%s: logged in; boot_id %s, uptime %.2f s, disk pattern of %d MiB "
                     "written before the reboot reads back", where, boot_id, uptime,
                     self.disk_mib)

    def migration_scenario(self) -> None:
        src, dst = self.hosts[0], self.hosts[1]
        self.migrate_wait(self.vms, src, dst, self.start_work, self.check_work)
        mig = self.migrations[-1]
        logs = summaries(mig.vms, self.done_pattern, RESET_MARKER, self.offsets)
        views = self.sync({"before": self.before, "after": self.after, "logs": logs},
                          tag=f"{mig.mig_id}-reboot-evidence")
        problems = []
        for name in self.vms:
            before, after = views[src]["before"][name], views[dst]["after"][name]
            src_log, dst_log = views[src]["logs"][name], views[dst]["logs"][name]
            problems += reboot_problems(name, mig.mig_id, src, dst, before, after,
                                        src_log, dst_log, self.slack)
            reset_on: Optional[str] = (src if src_log["marker"] else
                                       dst if dst_log["marker"] else None)
            log.info("%s, %s %s->%s: boot_id %s -> %s, uptime at login %.2f s, %.2f s "
                     "after the reboot command; reset seen on %s; login prompt on the "
                     "source after the command: %s, on the destination: %s", name,
                     mig.mig_id, src, dst, before["boot_id"], after["boot_id"],
                     after["uptime"], after["t_login"] - before["t_reboot"],
                     reset_on or "neither console", src_log["booted"], dst_log["booted"])
        if problems:
            raise TestFail("; ".join(problems))
        log.info("reboot across the migration verified: begun on %s, finished on %s",
                 src, dst)


def run(test: Any, params: Params, env: Env) -> None:
    RebootMigration(test, params, env).run()
