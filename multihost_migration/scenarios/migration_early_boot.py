"""Migration while the guest is still booting (variant `early_boot`).

Source: QEMU starts and nobody logs in.  As soon as the serial console shows
`early_boot_wait_for` (a regex; the cfg uses "Linux version": the kernel has
started) the migration begins.  The cfg appends `loglevel=7` to the tiny
guest's kernel command line: the kernel then prints its whole boot on ttyS0,
which is (a) the evidence that splits the boot between the two hosts and
(b) slow under TCG: here the kernel phase lasts 4-11 s (idle to busy 2-core
machine) against 0.4-2 s for the migration of the booting guest, so the
migration ends well inside the boot even when other tests load the machine.

Destination: the guest must finish booting there: login prompt and login,
a command answers (`uname -r`), the disk works (a pattern of
`disk_check_mib` MiB written and read back on /dev/vda).

Proof that the migration ran during the boot, from both serial logs (each
host summarises its own log once the migration is done; the summaries are
exchanged over the sync server and checked on every host):

  - the source log has no login prompt (`boot_done_pattern`): the boot did
    not finish there;
  - the destination log has the login prompt but not the early marker: the
    boot went on there and did not start over;
  - the kernel's timestamps continue: the destination's first is not before
    the source's last.

The memory checker (MemoryDirtier) is impossible here: it is a guest
program started from a shell, and there is no shell until the boot is over.

Under TCG, QEMU 7.2 misses guest writes made through soft-TLB entries that
survive a dirty-bitmap sync (see MemoryDirtier.start).  A booting kernel
hardly switches address spaces and IntegrityMigration's workaround (a
spinning guest process) needs a shell, so every live sync after the first
can lose writes: a reboot migration that took 5 passes left the destination
kernel with a NULL-pointer oops in 2 runs of 2.  The cfg therefore raises
`migrate_parameter_downtime-limit` so that QEMU stops the guest right after
the bulk pass (3 passes: setup, after the bulk pass, final); the live bulk
pass is what this scenario needs.  A boot that does not finish on the
destination FAILs with the kernel's oops line if its console has one, and
with the pass count when it exceeded 3.
A guest whose boot ends before the migration does (`early_boot_wait_for =
login:` makes it so on purpose) FAILs with the source's log as evidence.

The serial-log helpers are in _boot.py (shared with `reboot`).
"""

from __future__ import annotations

import logging
from typing import Any

from multihost_migration.errors import GuestCheckError, MigrationError, ShellCommandError
from multihost_migration.guest.checks import DiskPattern
from multihost_migration.migration import MigrationData, MultihostMigration
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.scenarios._boot import (DEFAULT_BOOT_DONE, boot_failure, clean,
                                                 login_after_boot, read_log,
                                                 serial_summary, summaries, tail,
                                                 wait_for_serial)
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)


def boot_split_problems(vm: str, mig_id: str, src: str, dst: str,
                        src_log: dict[str, Any], dst_log: dict[str, Any],
                        marker: str) -> list[str]:
    """Why the serial logs do not show a boot begun on `src` and finished on
    `dst` by migration `mig_id` ([] when they do)."""
    where = f"{vm}, {mig_id} {src}->{dst}"
    problems = []
    if marker and not src_log["marker"]:
        problems.append(f"{where}: the source serial log never shows {marker!r}: the "
                        f"boot had not reached it on {src} (source log: {src_log['tail']!r})")
    if src_log["booted"]:
        problems.append(f"{where}: the guest finished booting on the source {src} before "
                        f"the migration ended: its serial log there has the login prompt "
                        f"(source log: {src_log['tail']!r})")
    if not dst_log["booted"]:
        problems.append(f"{where}: the destination serial log on {dst} has no login prompt "
                        f"(destination log: {dst_log['tail']!r})")
    if marker and dst_log["marker"] and not src_log["booted"]:
        problems.append(f"{where}: the boot started over on the destination {dst}: its "
                        f"serial log shows {marker!r} again (destination log: "
                        f"{dst_log['tail']!r})")
    first, last = dst_log["first_ts"], src_log["last_ts"]
    if first is not None and last is not None and first < last:
        problems.append(f"{where}: kernel time goes back across the migration: last "
                        f"message on {src} at {last:.6f} s, first on {dst} at {first:.6f} s")
    return problems


# -- the scenario -------------------------------------------------------------


class EarlyBootMigration(MultihostMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.wait_for = str(params.get("early_boot_wait_for", ""))
        self.done_pattern = str(params.get("boot_done_pattern", DEFAULT_BOOT_DONE))
        self.disk_mib = params.get_int("disk_check_mib", 4)
        self.disk_seed = params.get_int("disk_check_seed", 1234)

    def start_work(self, mig_data: MigrationData) -> None:
        """Source, right after QEMU started: wait for the early marker, no login."""
        for vm in mig_data.vms:
            if not self.wait_for:
                log.info("%s on %s: migrating right after QEMU started", vm.name, self.hostid)
                continue
            seen = wait_for_serial(vm, self.wait_for, self.login_timeout)
            if seen is None:
                raise MigrationError(
                    f"{vm.name} on {self.hostid}: {self.wait_for!r} not in the serial log "
                    f"within {self.login_timeout:.0f} s of boot, {mig_data.mig_id} not "
                    f"started (log: {tail(read_log(vm.serial_log_path))!r})")
            log.info("%s on %s: %r on the console after %.1f s; migrating now, while "
                     "it boots", vm.name, self.hostid, self.wait_for, seen)

    def check_work(self, mig_data: MigrationData) -> None:
        """Destination: the boot ends here; login, a command, the disk."""
        for vm in mig_data.vms:
            where = f"{vm.name} on {self.hostid} after {mig_data.mig_id}"
            session = login_after_boot(vm, mig_data, self.login_timeout, where)
            try:
                kernel = session.cmd("uname -r").strip()
                uptime = session.cmd("cat /proc/uptime").split()[0]
                if self.disk_mib:
                    disk = DiskPattern(session)
                    disk.write(self.disk_seed, self.disk_mib)
                    disk.verify()
            except (ShellCommandError, GuestCheckError) as err:
                raise TestFail(f"{where}: the guest booted but does not work: {err}") from err
            log.info("%s: logged in after the boot finished here; uname -r -> %s, uptime "
                     "%s s, disk pattern of %d MiB written and read back", where, kernel,
                     uptime, self.disk_mib)

    def migration_scenario(self) -> None:
        src, dst = self.hosts[0], self.hosts[1]
        self.migrate_wait(self.vms, src, dst, self.start_work, self.check_work)
        mig = self.migrations[-1]
        mine = summaries(mig.vms, self.done_pattern, self.wait_for)
        views = self.sync(mine, tag=f"{mig.mig_id}-boot-evidence")
        problems = []
        for name in self.vms:
            src_log, dst_log = views[src][name], views[dst][name]
            problems += boot_split_problems(name, mig.mig_id, src, dst, src_log, dst_log,
                                            self.wait_for)
            log.info("%s, %s %s->%s: source console: kernel up to %s s, login prompt: %s; "
                     "destination console: kernel from %s s, login prompt: %s", name,
                     mig.mig_id, src, dst, src_log["last_ts"], src_log["booted"],
                     dst_log["first_ts"], dst_log["booted"])
        if problems:
            raise TestFail("; ".join(problems))
        log.info("boot split verified: begun on %s, finished on %s", src, dst)


def run(test: Any, params: Params, env: Env) -> None:
    EarlyBootMigration(test, params, env).run()


# Shared with reboot (_boot.py); importable from here as before.
__all__ = ["DEFAULT_BOOT_DONE", "EarlyBootMigration", "boot_failure",
           "boot_split_problems", "clean", "read_log", "run", "serial_summary",
           "wait_for_serial"]
