"""Migration while a guest process writes to the disk.

A writer in the guest (a busybox shell loop) writes 4 KiB blocks to
/dev/vda one after the other, each synced (`conv=fsync`) before the next,
each holding a line that names it: seed, block number and write number
(`diskio_seed`), in a region of `diskio_blocks` blocks starting at
`diskio_offset_mib` MiB (after the IntegrityMigration disk pattern, if
any); past the region's end it wraps around.  After every block it stores
its write count in guest RAM (/tmp), so the count migrates with the guest.

On the source the writer starts before the migration (at least
`diskio_min_blocks` blocks written), and right before `migrate` the
current count is copied to a mark file, also in guest RAM.  On the
destination, after the migration:

* the writer must still run there, its count past the mark (it wrote
  during the migration), and its count must keep growing (it writes on the
  destination): the writes overlapped the migration;
* then it is stopped (finishing its block), the memory dirtier is checked,
  and every block it wrote is read back with O_DIRECT (from the disk, not
  the guest's page cache) and compared with what its last write put there.
  A block that differs FAILs the test, naming the block, its offset, the
  write expected there and its first bytes.

`diskio_corrupt_block = N` overwrites block N of the region with random
bytes just before the read-back: the test must then FAIL naming block N.

Timing: the writer does some 20-80 blocks/s under TCG (the memory dirtier
shares the one vCPU), the migration a few seconds: a few hundred blocks to
verify.  Waits have deadlines of tens of seconds (a loaded 2-core machine).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import time
from typing import Any, NamedTuple, Optional

from multihost_migration.errors import GuestCheckError, ShellCommandError
from multihost_migration.guest.console import ConsoleSession
from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.poller import Poller
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._datapath import DatapathMigration, Evidence, where
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

BLOCK = 4096
LINE = 64                      # bytes per line; BLOCK // LINE lines per block
#: The writer's files in the guest (RAM): STATE + .count .mark .stop .pid .err .got
STATE = "/tmp/mhm-diskio"
COUNT_FILE = f"{STATE}.count"
MARK_FILE = f"{STATE}.mark"
STOP_FILE = f"{STATE}.stop"
PID_FILE = f"{STATE}.pid"
ERR_FILE = f"{STATE}.err"
MAX_LISTED = 20
_BAD = re.compile(r"^DISKIO BAD block=(\d+)$", re.M)
_CHECKED = re.compile(r"^DISKIO CHECKED blocks=(\d+) bad=(\d+)$", re.M)


def block_line(seed: int, block: int, write: int) -> str:
    """The text one write puts in a block, LINE bytes with its newline,
    repeated BLOCK // LINE times."""
    return f"{f'MHM-DISKIO:seed={seed}:block={block}:write={write}':<{LINE - 1}}\n"


def last_write(block: int, writes: int, blocks: int) -> Optional[int]:
    """Number of the last write of `block` when `writes` writes went round a
    region of `blocks` blocks (write i hits block i % blocks), None if none."""
    if block >= min(writes, blocks):
        return None
    return block + blocks * ((writes - 1 - block) // blocks)


def writer_command(device: str, seed: int, first: int, blocks: int,
                   state: str = STATE) -> str:
    """The guest shell line that starts the writer in the background
    (`state`: prefix of its files)."""
    # 64 copies of the line in $x by doubling, printed by the builtin printf
    # (one format use per word): one fork for the pipeline, one exec (dd).
    body = (f"i=0; rm -f {state}.stop {state}.err; echo 0 > {state}.count; "
            f"while [ ! -e {state}.stop ]; do b=$((i % {blocks})); "
            f"l=MHM-DISKIO:seed={seed}:block=$b:write=$i; x=\"$l $l\"; "
            + "x=\"$x $x\"; " * 5
            + f"printf '%-{LINE - 1}s\\n' $x | dd of={shlex.quote(device)} bs={BLOCK} "
            f"seek=$(({first} + b)) count=1 iflag=fullblock conv=notrunc,fsync "
            f"2>/dev/null || {{ echo \"write $i block $b failed\" > {state}.err; break; }}; "
            f"i=$((i + 1)); echo $i > {state}.count; done")
    return f"( {body} ) >/dev/null 2>&1 & echo $! > {state}.pid"


def verify_command(device: str, seed: int, first: int, blocks: int, writes: int,
                   state: str = STATE) -> str:
    """Guest shell line: read the written blocks back with O_DIRECT, compare
    with what their last writes put there; prints DISKIO BAD / CHECKED."""
    count = min(writes, blocks)
    got = f"{state}.got"
    expected = (f"awk -v s={seed} -v n={blocks} -v f={writes} -v m={count} "
                f"'BEGIN {{ for (b = 0; b < m; b++) {{ w = b + n * int((f - 1 - b) / n); "
                f"l = sprintf(\"%-{LINE - 1}s\\n\", "
                f"sprintf(\"MHM-DISKIO:seed=%d:block=%d:write=%d\", s, b, w)); "
                f"for (k = 1; k < {BLOCK // LINE}; k *= 2) l = l l; printf \"%s\", l }} }}'")
    return (f"dd if={shlex.quote(device)} of={got} bs={BLOCK} skip={first} count={count} "
            f"iflag=direct 2>/dev/null && [ \"$(wc -c < {got})\" -eq {count * BLOCK} ] "
            f"&& {expected} | cmp -l - {got} "
            f"| awk -v m={count} '{{ b = int(($1 - 1) / {BLOCK}); "
            f"if (!(b in bad)) {{ bad[b] = 1; n++; if (n <= {MAX_LISTED}) "
            f"print \"DISKIO BAD block=\" b }} }} "
            f"END {{ print \"DISKIO CHECKED blocks=\" m \" bad=\" n + 0 }}'")


class DiskCheck(NamedTuple):
    checked: int
    bad: int
    bad_blocks: tuple[int, ...]   # the first MAX_LISTED


def parse_verify(status: int, output: str) -> DiskCheck:
    """The result of verify_command; GuestCheckError if it did not run."""
    done = _CHECKED.search(output)
    if status != 0 or done is None:
        raise GuestCheckError(f"disk read-back did not complete (exit {status}):\n"
                              f"{output.strip()}")
    return DiskCheck(int(done.group(1)), int(done.group(2)),
                     tuple(int(m) for m in _BAD.findall(output)))


def describe_bad(check: DiskCheck, seed: int, first: int, blocks: int, writes: int,
                 first_bytes: str) -> str:
    """What a failed read-back says: which blocks, where, what was expected."""
    block = check.bad_blocks[0] if check.bad_blocks else -1
    listed = ", ".join(str(b) for b in check.bad_blocks)
    more = f" (first {len(check.bad_blocks)} listed)" if check.bad > len(check.bad_blocks) \
        else ""
    return (f"{check.bad} of {check.checked} blocks written during the test read back "
            f"wrong: block {listed}{more}; block {block} (disk offset "
            f"{(first + block) * BLOCK}) should hold write "
            f"#{last_write(block, writes, blocks)} "
            f"{block_line(seed, block, last_write(block, writes, blocks) or 0).strip()!r}, "
            f"it starts with: {' '.join(first_bytes.split())!r}")


class WriterWatch(Poller):
    """Source, during a migration: the writer's count read on the console
    between two query-migrate replies that both say 'active'."""

    interval = 0.05
    join_timeout = 30.0   # a console read in progress may take up to 10 s

    def __init__(self, vm: VM, session: ConsoleSession, mark: int) -> None:
        super().__init__(f"diskio-watch-{vm.name}")
        self.vm = vm
        self.session = session
        self.mark = mark
        self.during: list[int] = []

    def _status(self) -> str:
        return str(self.vm.query_migrate().get("status", "none"))

    def poll(self) -> bool:
        if self._status() != "active":
            return True
        count = _count(self.session, COUNT_FILE, timeout=10)
        if self._status() == "active":
            self.during.append(count)
        return True


def _count(session: ConsoleSession, path: str, timeout: float = 60.0,
           command: Optional[str] = None, attempts: int = 5) -> int:
    """The block count in guest file `path` (`command` prints it).  The
    writer rewrites the file after every block: a read that catches it
    empty is retried."""
    output = ""
    for _ in range(attempts):
        output = session.cmd(command or f"cat {path}", timeout).strip()
        try:
            return int(output.split()[-1])
        except (ValueError, IndexError):
            time.sleep(0.05)
    raise GuestCheckError(f"{path} holds {output!r}, not a block count")


class DiskIOMigration(DatapathMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.device = str(params.get("diskio_device", "/dev/vda"))
        self.io_seed = params.get_int("diskio_seed", self.disk_seed)
        self.io_blocks = params.get_int("diskio_blocks", 4096)
        self.io_first = params.get_int("diskio_offset_mib", self.disk_mib) * (1 << 20) // BLOCK
        self.min_blocks = params.get_int("diskio_min_blocks", 20)
        self.io_timeout = params.get_float("diskio_timeout", 60.0)
        corrupt = str(params.get("diskio_corrupt_block") or "").strip()
        self.corrupt_block: Optional[int] = int(corrupt) if corrupt else None

    def _wait_count(self, session: ConsoleSession, beyond: int, what: str) -> int:
        """Until the writer's count exceeds `beyond`; TestFail at the deadline."""
        deadline = time.monotonic() + self.io_timeout
        while True:
            count = _count(session, COUNT_FILE)
            if count > beyond:
                return count
            if time.monotonic() >= deadline:
                status, err = session.cmd_status_output(f"cat {ERR_FILE}")
                raise TestFail(f"{what}: the disk writer is stuck at {count} blocks for "
                               f"{self.io_timeout:.0f} s"
                               + (f" ({err.strip()})" if status == 0 else ""))
            session.cmd("sleep 0.2")

    def start_work(self, mig_data: MigrationData) -> None:
        super().start_work(mig_data)
        for name in mig_data.vms_name:
            session = self._console(name)
            session.cmd(writer_command(self.device, self.io_seed, self.io_first,
                                       self.io_blocks))
            count = self._wait_count(session, self.min_blocks - 1,
                                     where(mig_data, name, self.hostid))
            log.info("%s: disk writer started, %d blocks written before migrating",
                     where(mig_data, name, self.hostid), count)

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        watches = []
        for vm in mig_data.vms:
            session = self._console(vm.name)
            # The mark travels in guest RAM: the destination reads it back.
            mark = _count(session, MARK_FILE,
                          command=f"cp {COUNT_FILE} {MARK_FILE}; cat {MARK_FILE}")
            watches.append(WriterWatch(vm, session, mark))
        with contextlib.ExitStack() as stack:
            for watch in watches:
                stack.enter_context(watch)
            super().migrate_vms_src(mig_data)
        for watch in watches:
            context = where(mig_data, watch.vm.name, self.hostid)
            self._record(mig_data, watch.vm.name, {
                "blocks_before_migration": watch.mark,
                "blocks_while_migration_active": watch.during})
            if not any(count > watch.mark for count in watch.during):
                raise TestFail(f"{context}: no disk write seen while the migration was "
                               f"active: {watch.mark} blocks written when it started, "
                               f"counts read while query-migrate said 'active': "
                               f"{watch.during or 'none'} (slow it down with "
                               f"migrate_parameter_max-bandwidth)")

    def check_work(self, mig_data: MigrationData) -> None:
        sessions = {name: self._console(name) for name in mig_data.vms_name}
        counts = {name: (_count(s, MARK_FILE), _count(s, COUNT_FILE))
                  for name, s in sessions.items()}   # first thing: right after migrating
        for name, session in sessions.items():
            self._overlap(mig_data, name, session, *counts[name])
        super().check_work(mig_data)   # memory (and disk pattern) checks

    def _overlap(self, mig_data: MigrationData, name: str, session: ConsoleSession,
                 mark: int, arrived: int) -> None:
        """The writer ran before, during and after the migration; stop it."""
        context = where(mig_data, name, self.hostid)
        if arrived <= mark:
            raise TestFail(f"{context}: the disk writer wrote nothing during the "
                           f"migration: {mark} blocks when it started, {arrived} when "
                           f"the guest arrived here")
        alive, _ = session.cmd_status_output(f"kill -0 $(cat {PID_FILE})")
        if alive != 0:
            _, err = session.cmd_status_output(f"cat {ERR_FILE}")
            raise TestFail(f"{context}: the disk writer is not running after the "
                           f"migration ({arrived} blocks written): {err.strip()}")
        later = self._wait_count(session, arrived, f"{context}, after the migration")
        # stop and reap in one command line (see MemoryDirtier.check); `wait`
        # reaps it in the shell that started it (the serial console's), the
        # loop sees it end from another (a network login is a new shell)
        try:
            session.cmd(f"p=$(cat {PID_FILE}); touch {STOP_FILE}; wait $p 2>/dev/null; "
                        "while kill -0 $p 2>/dev/null; do usleep 100000; done",
                        timeout=self.io_timeout)
        except ShellCommandError as err:
            raise TestFail(f"{context}: the disk writer did not stop within "
                           f"{self.io_timeout:.0f} s: {err}") from err
        status, failure = session.cmd_status_output(f"cat {ERR_FILE}")
        if status == 0:
            raise TestFail(f"{context}: the disk writer failed: {failure.strip()}")
        final = _count(session, COUNT_FILE)
        found = {"blocks_before_migration": mark, "blocks_when_arrived": arrived,
                 "blocks_seen_growing_here": later, "blocks_total": final}
        self.evidence.setdefault(mig_data.mig_id, {}).setdefault(name, {}).update(found)
        log.info("%s: disk writer overlapped the migration: %d blocks before it, %d "
                 "when the guest arrived, %d on here, %d in all; stopped", context, mark,
                 arrived, later, final)

    def dest_evidence(self, vm: VM, mig_data: MigrationData) -> Evidence:
        """Read back every block the writer wrote (after the memory check)."""
        context = where(mig_data, vm.name, self.hostid)
        session = self._console(vm.name)
        writes = _count(session, COUNT_FILE)
        if self.corrupt_block is not None:
            log.warning("%s: overwriting disk block %d with random bytes on purpose "
                        "(diskio_corrupt_block)", context, self.corrupt_block)
            session.cmd(f"dd if=/dev/urandom of={shlex.quote(self.device)} bs={BLOCK} "
                        f"seek={self.io_first + self.corrupt_block} count=1 "
                        f"conv=notrunc,fsync 2>/dev/null")
        status, output = session.cmd_status_output(
            verify_command(self.device, self.io_seed, self.io_first, self.io_blocks, writes),
            timeout=self.io_timeout + 60)
        session.cmd(f"rm -f {STATE}.got")
        try:
            check = parse_verify(status, output)
        except GuestCheckError as err:
            raise TestFail(f"{context}: {err}") from err
        if check.bad:
            block = check.bad_blocks[0]
            head = session.cmd_output(f"dd if={shlex.quote(self.device)} bs={BLOCK} "
                                      f"skip={self.io_first + block} count=1 iflag=direct "
                                      f"2>/dev/null | head -c 40 | od -An -c")
            raise TestFail(f"{context}: disk I/O during migration: "
                           + describe_bad(check, self.io_seed, self.io_first,
                                          self.io_blocks, writes, head))
        log.info("%s: disk OK: all %d blocks the writer wrote read back as written",
                 context, check.checked)
        return {"blocks_verified": check.checked}

    def migration_scenario(self) -> None:
        self.migrate_recorded(self.vms, self.hosts[0], self.hosts[1], self.start_work,
                              self.check_work, params_append={"last_round": "yes"})


def run(test: Any, params: Params, env: Env) -> None:
    DiskIOMigration(test, params, env).run()
