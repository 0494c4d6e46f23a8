"""Migration of a logged-in guest with a running workload (variant `after_login`).

Source: log in on the serial console, write the disk pattern and start the
memory dirtier (IntegrityMigration), then start the workload: a shell loop
that writes an ever-growing counter to WORKLOAD_COUNTER every 0.1 s.  Its PID
(`$!`, also kept in WORKLOAD_PID_FILE in the guest), the login shell's PID
(`$$`) and the counter are noted.

Destination, after the migration: the workload is looked at before and after
the memory and disk checks of IntegrityMigration (every page of the dirtier,
the disk pattern), at least WORKLOAD_GAP s apart.  Then the hosts exchange
what they saw (sync server) and every host checks, against the source's notes:
  - the console reached the same login shell: `$$` is unchanged (a shell that
    died would have been replaced by getty and a new login: a new PID);
  - the workload has the same PID, is alive, is still the loop (its
    /proc/PID/cmdline names the counter file), its counter has not gone back
    and grew between the two looks: it runs on the destination.
`migrate_count` rounds ping-pong as in IntegrityMigration, each checked the
same way against the previous round's last look; the workload is stopped
after the last one.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, NamedTuple, Optional

from multihost_migration.errors import GuestCheckError, ShellCommandError
from multihost_migration.guest.console import ConsoleSession
from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.scenarios._integrity import IntegrityMigration
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

WORKLOAD_COUNTER = "/tmp/mhm-workload.counter"
WORKLOAD_PID_FILE = "/run/mhm-workload.pid"
WORKLOAD_SCRIPT = (f"i=0; while :; do i=$((i+1)); echo $i > {WORKLOAD_COUNTER}.new; "
                   f"mv {WORKLOAD_COUNTER}.new {WORKLOAD_COUNTER}; sleep 0.1; done")
#: Least seconds between the two looks on the destination: at 10 increments
#: a second, a running loop moves its counter even on a busy TCG guest.
WORKLOAD_GAP = 1.0
#: Seconds the workload gets to write its first value on the source.
WORKLOAD_START = 10.0
_PROBE = re.compile(r"^(PID|SHELL|ALIVE|CMD|COUNT)=(.*)$", re.M)


class WorkloadProbe(NamedTuple):
    """One look at the workload from the guest shell.  (A NamedTuple: the
    client job loads scenario modules outside sys.modules, where
    dataclasses cannot resolve their annotations.)"""

    shell_pid: int
    pid: Optional[int]        # from WORKLOAD_PID_FILE; None if unreadable
    alive: bool
    cmdline: str
    counter: Optional[int]    # None: the counter file could not be read


PROBE_COMMAND = (f"p=$(cat {WORKLOAD_PID_FILE} 2>/dev/null); echo PID=$p; echo SHELL=$$; "
                 f"if [ -n \"$p\" ] && kill -0 $p 2>/dev/null; then echo ALIVE=1; "
                 f"else echo ALIVE=0; fi; echo CMD=$(tr '\\0' ' ' < /proc/$p/cmdline "
                 f"2>/dev/null); echo COUNT=$(cat {WORKLOAD_COUNTER} 2>/dev/null)")


def parse_probe(output: str) -> WorkloadProbe:
    """The WorkloadProbe in the output of PROBE_COMMAND; GuestCheckError if
    the output lacks its lines."""
    fields = {key: value.strip() for key, value in _PROBE.findall(output.replace("\r", ""))}
    if not fields.get("SHELL", "").isdigit() or "ALIVE" not in fields:
        raise GuestCheckError(f"workload probe: unexpected output {output!r}")
    pid, count = fields.get("PID", ""), fields.get("COUNT", "")
    return WorkloadProbe(shell_pid=int(fields["SHELL"]),
                         pid=int(pid) if pid.isdigit() else None,
                         alive=fields["ALIVE"] == "1", cmdline=fields.get("CMD", ""),
                         counter=int(count) if count.isdigit() else None)


def probe_workload(session: ConsoleSession) -> WorkloadProbe:
    return parse_probe(session.cmd(PROBE_COMMAND))


def workload_problems(where: str, before: WorkloadProbe, after: WorkloadProbe,
                      later: WorkloadProbe) -> list[str]:
    """Why the login shell and workload seen `before` the migration (on the
    source) are not the ones running `after` it ([] if they are); `later` is
    a second look on the destination, at least WORKLOAD_GAP s after."""
    problems = []
    if after.shell_pid != before.shell_pid:
        problems.append(f"{where}: not the same login shell: PID {before.shell_pid} before "
                        f"the migration, {after.shell_pid} after (logged in anew)")
    if after.pid != before.pid:
        problems.append(f"{where}: the workload was PID {before.pid} on the source, "
                        f"{WORKLOAD_PID_FILE} says {after.pid} on the destination")
    if not after.alive:
        problems.append(f"{where}: workload PID {before.pid} is gone")
        return problems
    if WORKLOAD_COUNTER not in after.cmdline:
        problems.append(f"{where}: PID {after.pid} is not the workload any more: its "
                        f"command line is {after.cmdline!r}")
    if before.counter is None or after.counter is None or later.counter is None:
        problems.append(f"{where}: the workload's counter {WORKLOAD_COUNTER} is unreadable "
                        f"(before {before.counter}, after {after.counter}, "
                        f"later {later.counter})")
        return problems
    if after.counter < before.counter:
        problems.append(f"{where}: the workload's counter went back from {before.counter} to "
                        f"{after.counter} (its state was lost)")
    if not later.alive or later.counter <= after.counter:
        problems.append(f"{where}: workload PID {after.pid} does not run: its counter "
                        f"stayed at {after.counter} (alive: {later.alive}, then "
                        f"{later.counter})")
    return problems


class AfterLoginMigration(IntegrityMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        # Per VM: the last look before the next migration (source side), and
        # the two looks after this round's migration (destination side).
        self.last: dict[str, WorkloadProbe] = {}
        self.looks: dict[str, tuple[WorkloadProbe, WorkloadProbe]] = {}

    def start_work(self, mig_data: MigrationData) -> None:
        super().start_work(mig_data)     # logs in; disk pattern; memory dirtier
        for name in mig_data.vms_name:
            session = self._console(name)
            session.cmd(f"sh -c '{WORKLOAD_SCRIPT}' >/dev/null 2>&1 & "
                        f"echo $! > {WORKLOAD_PID_FILE}")
            deadline = time.monotonic() + WORKLOAD_START
            probe = probe_workload(session)
            while probe.counter is None and time.monotonic() < deadline:
                time.sleep(0.2)
                probe = probe_workload(session)
            if not probe.alive or probe.counter is None:
                raise GuestCheckError(f"{name} on {self.hostid}: the workload did not "
                                      f"start: {probe}")
            self.last[name] = probe
            log.info("%s on %s: logged in (shell PID %d), workload PID %s running "
                     "(counter %d)", name, self.hostid, probe.shell_pid, probe.pid,
                     probe.counter)

    def check_work(self, mig_data: MigrationData) -> None:
        """Destination: look at the workload, check memory and disk, look again."""
        looked: dict[str, tuple[WorkloadProbe, float]] = {}
        for name in mig_data.vms_name:
            looked[name] = (self._look(name, mig_data), time.monotonic())
        super().check_work(mig_data)
        for name in mig_data.vms_name:
            after, when = looked[name]
            time.sleep(max(0.0, when + WORKLOAD_GAP - time.monotonic()))
            self.looks[name] = (after, self._look(name, mig_data))
            if mig_data.params.get("last_round") == "yes" and after.pid is not None:
                # stop and reap it in one command line (see MemoryDirtier.check)
                self._console(name).cmd(f"kill {after.pid}; wait {after.pid} 2>/dev/null; "
                                        f"true")

    def _look(self, name: str, mig_data: MigrationData) -> WorkloadProbe:
        try:
            return probe_workload(self._console(name))
        except (ShellCommandError, GuestCheckError) as err:
            raise TestFail(f"{name} on {self.hostid} after {mig_data.mig_id}: cannot look "
                           f"at the workload: {err}") from err

    def _verify_round(self, mig: MigrationData) -> None:
        """Every host: compare the source's last look with the destination's."""
        mine = {"last": {k: v._asdict() for k, v in self.last.items()},
                "looks": {k: [p._asdict() for p in v] for k, v in self.looks.items()}}
        views = self.sync(mine, tag=f"{mig.mig_id}-workload")
        problems = []
        for name in mig.vms_name:
            where = f"{name}, {mig.mig_id} {mig.src}->{mig.dst}"
            before = WorkloadProbe(**views[mig.src]["last"][name])
            after, later = (WorkloadProbe(**p) for p in views[mig.dst]["looks"][name])
            problems += workload_problems(where, before, after, later)
            log.info("%s: login shell PID %d -> %d, workload PID %s -> %s, counter %s on "
                     "%s, then %s -> %s on %s", where, before.shell_pid, after.shell_pid,
                     before.pid, after.pid, before.counter, mig.src, after.counter,
                     later.counter, mig.dst)
            self.last[name] = later
        self.looks = {}
        if problems:
            raise TestFail("; ".join(problems))

    def migration_scenario(self) -> None:
        self.ping_pong()

    def after_round(self, mig_data: MigrationData) -> None:
        self._verify_round(mig_data)


def run(test: Any, params: Params, env: Env) -> None:
    AfterLoginMigration(test, params, env).run()
