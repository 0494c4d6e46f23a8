"""Checks inside the guest that give a migration test its meaning.

    dirtier = MemoryDirtier(src_session); dirtier.start(64)     # before migrating
    MemoryDirtier(dst_session).check()    # after: GuestCheckError if a page is bad

    disk = DiskPattern(src_session); disk.write(seed=1234, mib=8)
    DiskPattern(dst_session).verify(seed=1234, mib=8)

    Heartbeat(src_session).start()        # guest writes "HB seq ns" to ttyS1 every 10 ms
    ... migrate; both VMs record <vm>-heartbeat.log (VM param heartbeat = yes) ...
    guest_downtime_ms(src.heartbeat_log_path, dst.heartbeat_log_path)

Heartbeat logs are written by the host (qemu/heartbeat.py), one line per
heartbeat the guest sent: "host_epoch_ns seq guest_ns".  The guest's
sequence numbers continue across the migration, so merging the source's and
the destination's logs by sequence number and taking the largest step of
the host clock between consecutive heartbeats gives the time the guest was
seen to stand still: the guest-observed downtime (an upper bound: it
includes one heartbeat interval).  Both hosts' clocks must agree (same
machine in the lab; NTP-synchronised epoch time on real hosts).
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Union

from ..errors import GuestCheckError, ShellCommandError
from .console import ConsoleSession

LOG = logging.getLogger(__name__)

MEMDIRTY_LOG = "/tmp/mhm-memdirty.log"
PID_FILE = "/run/mhm-memdirty.pid"
_MEMCHECK_OK = re.compile(r"MEMCHECK OK pages=(\d+) passes=(\d+)")
_MEMCHECK_BAD = re.compile(r"MEMCHECK BAD pages=(\d+) bad=(\d+) first_bad_page=(\d+)")
_READY = re.compile(r"MEMDIRTY READY pages=(\d+)")


CHURN_PID_FILE = "/run/mhm-tlb-churn.pid"


class MemCheckResult(NamedTuple):
    ok: bool
    pages: int
    bad: int


class MemoryDirtier:
    """mhm-memdirty in the guest: dirties every page; its invariant survives
    a correct migration (at most one discontinuity, as in QEMU's tests)."""

    def __init__(self, session: ConsoleSession, log: str = MEMDIRTY_LOG) -> None:
        self.session = session
        self.log = log
        self.pages: Optional[int] = None

    def start(self, mib: int, timeout: float = 60.0, tcg_workaround: bool = False) -> int:
        """Start dirtying `mib` MiB; return the page count once it runs.

        `tcg_workaround`: QEMU 7.2 under TCG misses guest writes made through
        soft-TLB entries that survive a migration dirty-bitmap sync (the
        memory check then finds 10-150 stale pages in about half of the
        migrations of a dirtier that never leaves the CPU).  A second,
        spinning guest process makes the guest switch tasks every tick; each
        switch reloads CR3, which flushes those entries.  KVM tracks dirty
        pages itself and needs no such help.
        """
        if tcg_workaround:
            self.session.cmd(f"[ -e {CHURN_PID_FILE} ] || {{ sh -c 'while :; do :; done' "
                             f">/dev/null 2>&1 & echo $! > {CHURN_PID_FILE}; }}")
        self.session.cmd(f"mhm-memdirty {int(mib)} > {shlex.quote(self.log)} 2>&1 &")
        deadline = time.monotonic() + timeout
        while True:
            output = self.session.cmd_output(f"cat {shlex.quote(self.log)}", timeout)
            match = _READY.search(output)
            if match:
                self.pages = int(match.group(1))
                return self.pages
            if time.monotonic() >= deadline:
                raise GuestCheckError(f"mhm-memdirty {mib} not ready within "
                                      f"{timeout:.0f}s; its output:\n{output}")
            self.session.cmd("sleep 0.2", timeout)

    def check(self, timeout: float = 60.0) -> MemCheckResult:
        """Stop the dirtier and verify its memory.  GuestCheckError (with
        the checker's output) when a page is bad or the check fails."""
        command = f"mhm-memcheck {max(1, int(timeout))}"
        # Reap the dirtier in the same command line: busybox ash loses the
        # login shell when it notices that background job's exit between two
        # commands (seen with 32+ MiB under TCG); `wait PID` is harmless when
        # the dirtier is not this shell's child.
        line = (f"p=$(cat {PID_FILE} 2>/dev/null); {command}; rc=$?; "
                f"[ -n \"$p\" ] && wait $p 2>/dev/null; (exit $rc)")
        try:
            status, output = self.session.cmd_status_output(line, timeout + 30)
        except ShellCommandError as err:
            raise GuestCheckError(f"{command} did not answer: {err}") from err
        return parse_memcheck(status, output)


def parse_memcheck(status: int, output: str) -> MemCheckResult:
    ok = _MEMCHECK_OK.search(output)
    if ok and status == 0:
        return MemCheckResult(True, int(ok.group(1)), 0)
    bad = _MEMCHECK_BAD.search(output)
    if bad:
        raise GuestCheckError(f"guest memory corrupted: {bad.group(2)} bad of "
                              f"{bad.group(1)} pages, first bad page {bad.group(3)}\n"
                              f"{output.strip()}")
    raise GuestCheckError(f"mhm-memcheck failed (exit {status}):\n{output.strip()}")


class DiskPattern:
    """mhm-diskpattern: a seeded pattern written on one host, verified on another."""

    def __init__(self, session: ConsoleSession, device: str = "/dev/vda") -> None:
        self.session = session
        self.device = device
        self.seed: Optional[int] = None
        self.mib: Optional[int] = None

    def write(self, seed: int, mib: int, timeout: float = 120.0) -> None:
        command = f"mhm-diskpattern write {shlex.quote(self.device)} {int(seed)} {int(mib)}"
        status, output = self.session.cmd_status_output(command, timeout)
        if status != 0 or "DISK WRITTEN" not in output:
            raise GuestCheckError(f"{command} failed (exit {status}):\n{output.strip()}")
        self.seed, self.mib = int(seed), int(mib)

    def verify(self, seed: Optional[int] = None, mib: Optional[int] = None,
               timeout: float = 120.0) -> None:
        """GuestCheckError unless the pattern reads back ("DISK OK")."""
        seed = self.seed if seed is None else seed
        mib = self.mib if mib is None else mib
        if seed is None or mib is None:
            raise GuestCheckError("DiskPattern.verify: no seed/size (call write first "
                                  "or pass them)")
        command = f"mhm-diskpattern verify {shlex.quote(self.device)} {int(seed)} {int(mib)}"
        status, output = self.session.cmd_status_output(command, timeout)
        if status != 0 or "DISK OK" not in output:
            raise GuestCheckError(f"disk pattern mismatch on {self.device} "
                                  f"(exit {status}):\n{output.strip()}")


class Heartbeat:
    """mhm-heartbeat in the guest, writing to the host-read serial port."""

    def __init__(self, session: ConsoleSession, device: str = "/dev/ttyS1",
                 interval_ms: int = 10) -> None:
        self.session = session
        self.device = device
        self.interval_ms = interval_ms

    def start(self) -> None:
        self.session.cmd(f"mhm-heartbeat {shlex.quote(self.device)} "
                         f"{int(self.interval_ms)} >/dev/null 2>&1 &")
        self.session.cmd("pidof mhm-heartbeat >/dev/null")

    def stop(self) -> None:
        # kill and reap in one command line (see MemoryDirtier.check)
        self.session.cmd_output("for p in $(pidof mhm-heartbeat); do kill $p; "
                                "wait $p 2>/dev/null; done; true")


# -- heartbeat logs ------------------------------------------------------------


@dataclass(frozen=True)
class HeartbeatRecord:
    host_ns: int
    seq: int
    guest_ns: int

    def line(self) -> str:
        return f"{self.host_ns} {self.seq} {self.guest_ns}\n"


@dataclass(frozen=True)
class HeartbeatGap:
    """The largest step of the host clock between consecutive heartbeats."""

    gap_ms: float
    before_seq: int
    after_seq: int
    lost: int          # heartbeats missing between the two
    records: int


_HB_LINE = re.compile(r"HB (\d+) (\d+)")


def parse_heartbeat_line(host_ns: int, text: str) -> Optional[HeartbeatRecord]:
    """The record for one "HB <seq> <guest_ns>" line from the guest, or None."""
    match = _HB_LINE.search(text)
    if match is None:
        return None
    return HeartbeatRecord(host_ns, int(match.group(1)), int(match.group(2)))


def read_heartbeat_log(path: Union[str, Path]) -> list[HeartbeatRecord]:
    """Records of a host-written heartbeat log; malformed lines are skipped."""
    records = []
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            records.append(HeartbeatRecord(int(fields[0]), int(fields[1]), int(fields[2])))
    return records


def largest_gap(records: Sequence[HeartbeatRecord]) -> HeartbeatGap:
    """Merge by sequence number (first sighting wins), largest host-clock step."""
    by_seq: dict[int, HeartbeatRecord] = {}
    for record in records:
        by_seq.setdefault(record.seq, record)
    ordered = [by_seq[seq] for seq in sorted(by_seq)]
    if len(ordered) < 2:
        raise GuestCheckError(f"heartbeat: {len(ordered)} record(s), need two to "
                              f"measure a gap (is `heartbeat = yes` set and "
                              f"mhm-heartbeat running?)")
    best = max(zip(ordered, ordered[1:]), key=lambda pair: pair[1].host_ns - pair[0].host_ns)
    return HeartbeatGap(gap_ms=(best[1].host_ns - best[0].host_ns) / 1e6,
                        before_seq=best[0].seq, after_seq=best[1].seq,
                        lost=best[1].seq - best[0].seq - 1, records=len(ordered))


def guest_downtime_ms(src_log: Union[str, Path], dst_log: Union[str, Path]) -> float:
    """Guest-observed downtime of a migration from the two VMs' heartbeat logs."""
    source = read_heartbeat_log(src_log)
    dest = read_heartbeat_log(dst_log)
    if not dest:
        raise GuestCheckError(f"heartbeat: no record in the destination log {dst_log}")
    if not source:
        raise GuestCheckError(f"heartbeat: no record in the source log {src_log}")
    gap = largest_gap(source + dest)
    LOG.info("guest-observed downtime %.1f ms (heartbeat %d -> %d, %d lost, %d records)",
             gap.gap_ms, gap.before_seq, gap.after_seq, gap.lost, gap.records)
    return gap.gap_ms
