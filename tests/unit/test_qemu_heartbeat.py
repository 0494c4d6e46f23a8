"""The host-side heartbeat recorder over a real unix socket (no QEMU)."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest

from multihost_migration.errors import VMError
from multihost_migration.guest.checks import read_heartbeat_log
from multihost_migration.qemu.heartbeat import HeartbeatRecorder


def _wait_records(recorder: HeartbeatRecorder, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while recorder.records < count:
        assert time.monotonic() < deadline, recorder.records
        time.sleep(0.01)


def test_records_lines_split_across_reads(tmp_path: Path) -> None:
    recorder = HeartbeatRecorder(tmp_path / "hb.sock", tmp_path / "vm1-heartbeat.log",
                                 logging.getLogger("test"))
    recorder.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(tmp_path / "hb.sock"))  # as QEMU does at startup
            before = time.time_ns()
            client.sendall(b"HB 0 100\nHB 1 2")
            time.sleep(0.05)
            client.sendall(b"00\nnoise\nHB 2 300\n")
            _wait_records(recorder, 3)
        after = time.time_ns()
    finally:
        recorder.stop()
    records = read_heartbeat_log(tmp_path / "vm1-heartbeat.log")
    assert [(r.seq, r.guest_ns) for r in records] == [(0, 100), (1, 200), (2, 300)]
    assert all(before <= r.host_ns <= after for r in records)
    assert records[0].host_ns < records[1].host_ns
    assert recorder.last is not None and recorder.last.seq == 2


def test_stop_without_connection_and_bind_failure(tmp_path: Path) -> None:
    recorder = HeartbeatRecorder(tmp_path / "hb.sock", tmp_path / "log")
    recorder.start()
    started = time.monotonic()
    recorder.stop()
    recorder.stop()
    assert time.monotonic() - started < 2.0
    with pytest.raises(VMError, match="cannot listen"):
        HeartbeatRecorder(tmp_path / "no" / "dir" / "hb.sock", tmp_path / "log").start()
