"""In-guest checks with a fake shell, and heartbeat log analysis (no QEMU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihost_migration.errors import GuestCheckError
from multihost_migration.guest.checks import (DiskPattern, HeartbeatRecord, MemoryDirtier,
                                              guest_downtime_ms, largest_gap,
                                              parse_heartbeat_line, parse_memcheck,
                                              read_heartbeat_log)
from tests.unit.fakes import FakeShell


def test_memcheck_ok_bad_and_error() -> None:
    assert parse_memcheck(0, "MEMCHECK OK pages=16384 passes=9\n") == (True, 16384, 0)
    with pytest.raises(GuestCheckError) as bad:
        parse_memcheck(1, "MEMCHECK BAD pages=4096 bad=3 first_bad_page=7\n")
    assert "3 bad of 4096 pages, first bad page 7" in str(bad.value)
    assert "MEMCHECK BAD pages=4096" in str(bad.value)
    with pytest.raises(GuestCheckError, match="exit 2"):
        parse_memcheck(2, "MEMCHECK ERROR no mhm-memdirty pid\n")


def test_memory_dirtier_start_and_check() -> None:
    shell = FakeShell({"cat /tmp/mhm-memdirty.log": (0, "MEMDIRTY READY pages=16384\n"),
                       "mhm-memcheck": (0, "MEMCHECK OK pages=16384 passes=3\n")})
    dirtier = MemoryDirtier(shell)
    assert dirtier.start(64) == 16384
    assert shell.commands[0].startswith("mhm-memdirty 64 ")
    ok, pages, bad = dirtier.check(timeout=30)
    assert (ok, pages, bad) == (True, 16384, 0)
    assert "mhm-memcheck 30" in shell.commands[-1] and "wait $p" in shell.commands[-1]


def test_memory_dirtier_not_ready() -> None:
    shell = FakeShell({"cat": (0, "mhm-memdirty: mmap: Cannot allocate memory\n")})
    with pytest.raises(GuestCheckError, match="Cannot allocate"):
        MemoryDirtier(shell).start(4096, timeout=0.1)


def test_disk_pattern() -> None:
    shell = FakeShell({"write /dev/vdb 7 8": (0, "DISK WRITTEN bytes=8388608\n"),
                       "verify /dev/vdb 7 8": (0, "DISK OK\n"),
                       "verify /dev/vdb 8 8": (1, "DISK BAD offset=4096\n")})
    disk = DiskPattern(shell, "/dev/vdb")
    with pytest.raises(GuestCheckError, match="no seed"):
        disk.verify()
    disk.write(7, 8)
    disk.verify()
    with pytest.raises(GuestCheckError, match="offset=4096"):
        disk.verify(seed=8)


def _write_log(path: Path, records: list[tuple[int, int]]) -> Path:
    path.write_text("".join(HeartbeatRecord(ms * 1_000_000, seq, seq * 10_000_000).line()
                            for ms, seq in records) + "garbage line\n")
    return path


def test_guest_downtime_spans_both_logs(tmp_path: Path) -> None:
    src = _write_log(tmp_path / "src.log", [(0, 0), (10, 1), (20, 2), (30, 3)])
    dst = _write_log(tmp_path / "dst.log", [(175, 5), (185, 6), (195, 7)])
    assert read_heartbeat_log(src)[1] == HeartbeatRecord(10_000_000, 1, 10_000_000)
    assert guest_downtime_ms(src, dst) == pytest.approx(145.0)
    gap = largest_gap(read_heartbeat_log(src) + read_heartbeat_log(dst))
    assert (gap.before_seq, gap.after_seq, gap.lost, gap.records) == (3, 5, 1, 7)


def test_guest_downtime_needs_both_logs(tmp_path: Path) -> None:
    src = _write_log(tmp_path / "src.log", [(0, 0), (10, 1)])
    with pytest.raises(GuestCheckError, match="destination"):
        guest_downtime_ms(src, tmp_path / "missing.log")
    with pytest.raises(GuestCheckError, match="source"):
        guest_downtime_ms(tmp_path / "missing.log", src)


def test_parse_heartbeat_line() -> None:
    assert parse_heartbeat_line(5, "\x00HB 12 3456\r") == HeartbeatRecord(5, 12, 3456)
    assert parse_heartbeat_line(5, "login: ") is None
