"""The QMP sequences of the disk copy (fake QMP link): NBD export on the
destination, mirror on the source, READY, completion, abort."""

from __future__ import annotations

import logging
from typing import Any, Optional

import pytest

from multihost_migration.errors import MigrationError, QMPCommandError
from multihost_migration.qemu import blockmirror
from multihost_migration.qemu.blockmirror import (BlockMirror, BlockMirrorError, NbdExport,
                                                  NbdTarget)
from multihost_migration.qemu.link import QemuLink
from tests.unit.test_qemu_vm import FakeChannel, FakeProcess

LOG = logging.getLogger("test")


class MirrorQEMU(FakeChannel):
    """query-block-jobs follows `jobs` (one list per call, the last repeats);
    block-job-cancel emits `on_cancel` (an event name) for the job."""

    def __init__(self, jobs: list[list[dict[str, Any]]], on_cancel: str = "BLOCK_JOB_COMPLETED",
                 error: Optional[str] = None) -> None:
        super().__init__([{"status": "none"}])
        self.jobs = jobs
        self.on_cancel = on_cancel
        self.cancel_error = error

    def execute(self, command: str, arguments: Optional[dict[str, Any]] = None,
                timeout: float = 30.0) -> Any:
        if command == "query-block":
            self.sent.append((command, {}))
            return [{"device": "drive_image1", "inserted": {"node-name": "#block123"}}]
        if command == "query-block-jobs":
            self.sent.append((command, {}))
            return self.jobs.pop(0) if len(self.jobs) > 1 else self.jobs[0]
        result = super().execute(command, arguments, timeout)
        if command == "block-job-cancel":
            data: dict[str, Any] = {"device": "mhm-mirror-image1", "len": 64 << 20,
                                    "offset": 64 << 20, "type": "mirror"}
            if self.cancel_error:
                data["error"] = self.cancel_error
            self.jobs = [[]]
            self.events.append({"event": self.on_cancel, "data": data})
        return result


def _job(offset: int, ready: bool) -> dict[str, Any]:
    return {"device": "mhm-mirror-image1", "offset": offset, "len": 64 << 20,
            "ready": ready, "status": "ready" if ready else "running", "type": "mirror"}


def _link(channel: FakeChannel) -> QemuLink:
    return QemuLink("vm1", channel, FakeProcess(), LOG)


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blockmirror, "POLL_INTERVAL", 0.01)


def _commands(channel: FakeChannel) -> list[str]:
    return [c for c, _ in channel.sent if c not in ("query-block-jobs", "query-block")]


def test_export_starts_server_and_exports_the_top_node_writable() -> None:
    channel = MirrorQEMU([[]])
    export = NbdExport(_link(channel), tls_creds="mhm-tls-server")
    export.start("0.0.0.0", 10809)
    export.add("image1")
    export.stop()
    export.stop()   # idempotent
    assert channel.sent[0] == ("nbd-server-start", {
        "addr": {"type": "inet", "data": {"host": "0.0.0.0", "port": "10809"}},
        "tls-creds": "mhm-tls-server"})
    assert ("block-export-add", {"type": "nbd", "id": "mhm-export-image1",
                                 "node-name": "#block123", "name": "image1",
                                 "writable": True}) in channel.sent
    assert _commands(channel) == ["nbd-server-start", "block-export-add", "nbd-server-stop"]


def test_export_falls_back_to_nbd_server_add() -> None:
    channel = MirrorQEMU([[]])
    channel.errors["block-export-add"] = QMPCommandError(
        "vm1", "block-export-add", {}, "CommandNotFound", "not found")
    export = NbdExport(_link(channel))
    export.start("0.0.0.0", 10809)
    export.add("image1")
    assert channel.sent[0][1] == {"addr": {"type": "inet", "data": {"host": "0.0.0.0",
                                                                    "port": "10809"}}}
    assert ("nbd-server-add", {"device": "drive_image1", "name": "image1",
                               "writable": True}) in channel.sent


def test_mirror_sequence_ready_then_complete_without_pivot() -> None:
    channel = MirrorQEMU([[_job(1 << 20, False)], [_job(32 << 20, False)],
                          [_job(64 << 20, True)]])
    mirror = BlockMirror(_link(channel), "image1", NbdTarget("198.18.0.12", 10809, "image1"),
                         sync="full", tls_creds="mhm-tls-client")
    mirror.start()
    progress = mirror.wait_ready(5.0)
    assert progress.ready and progress.pct == 100.0
    mirror.complete(5.0)
    assert channel.sent[0] == ("blockdev-add", {
        "driver": "nbd", "node-name": "mhm-nbd-image1",
        "server": {"type": "inet", "host": "198.18.0.12", "port": "10809"},
        "export": "image1", "tls-creds": "mhm-tls-client"})
    assert channel.sent[1] == ("blockdev-mirror", {
        "job-id": "mhm-mirror-image1", "device": "drive_image1", "target": "mhm-nbd-image1",
        "sync": "full"})
    # cancel on a READY job = complete without switching the source over
    assert _commands(channel) == ["blockdev-add", "blockdev-mirror", "block-job-cancel",
                                  "blockdev-del"]
    assert ("block-job-cancel", {"device": "mhm-mirror-image1"}) in channel.sent
    stats = mirror.stats()
    assert stats["length"] == 64 << 20 and stats["tls"] and stats["ready_s"] is not None


def test_incremental_mirror_is_sync_top_with_speed() -> None:
    channel = MirrorQEMU([[_job(0, True)]])
    BlockMirror(_link(channel), "image1", NbdTarget("h2", 1, "image1"), sync="top",
                speed=4 << 20).start()
    assert channel.sent[1][1]["sync"] == "top" and channel.sent[1][1]["speed"] == 4 << 20
    assert "tls-creds" not in channel.sent[0][1]
    with pytest.raises(ValueError):
        BlockMirror(_link(channel), "image1", NbdTarget("h2", 1, "x"), sync="none")


def test_complete_refuses_a_mirror_that_is_not_ready() -> None:
    channel = MirrorQEMU([[_job(1 << 20, False)]])
    mirror = BlockMirror(_link(channel), "image1", NbdTarget("h2", 1, "image1"))
    mirror.start()
    with pytest.raises(BlockMirrorError, match="not READY at the switchover"):
        mirror.complete(1.0)
    assert "block-job-cancel" not in _commands(channel)


def test_complete_fails_on_a_job_error() -> None:
    channel = MirrorQEMU([[_job(64 << 20, True)]], error="Input/output error")
    mirror = BlockMirror(_link(channel), "image1", NbdTarget("h2", 1, "image1"))
    mirror.start()
    mirror.wait_ready(1.0)
    with pytest.raises(BlockMirrorError) as info:
        mirror.complete(1.0)
    assert isinstance(info.value, MigrationError)
    assert "Input/output error" in str(info.value) and "image1" in str(info.value)


def test_wait_ready_raises_when_the_job_ends_by_itself() -> None:
    channel = MirrorQEMU([[_job(1 << 20, False)]])
    mirror = BlockMirror(_link(channel), "image1", NbdTarget("h2", 1, "image1"))
    mirror.start()
    channel.events.append({"event": "BLOCK_JOB_COMPLETED", "data": {
        "device": "mhm-mirror-image1", "error": "Connection reset by peer"}})
    with pytest.raises(BlockMirrorError, match="Connection reset by peer"):
        mirror.wait_ready(1.0)


def test_wait_ready_deadline_names_the_progress() -> None:
    channel = MirrorQEMU([[_job(8 << 20, False)]])
    mirror = BlockMirror(_link(channel), "image1", NbdTarget("h2", 1, "image1"))
    mirror.start()
    with pytest.raises(BlockMirrorError, match="not READY after 0 s .8 of 64 MiB"):
        mirror.wait_ready(0.05)


def test_abort_forces_the_cancel_and_drops_the_node() -> None:
    channel = MirrorQEMU([[_job(8 << 20, False)]], on_cancel="BLOCK_JOB_CANCELLED")
    mirror = BlockMirror(_link(channel), "image1", NbdTarget("h2", 1, "image1"))
    mirror.start()
    mirror.abort(1.0)
    assert ("block-job-cancel", {"device": "mhm-mirror-image1", "force": True}) in channel.sent
    assert _commands(channel)[-1] == "blockdev-del"
    mirror.abort(1.0)   # nothing left to do
    assert _commands(channel).count("blockdev-del") == 1


def test_start_failure_removes_the_node_and_carries_evidence() -> None:
    channel = MirrorQEMU([[]])
    channel.errors["blockdev-mirror"] = QMPCommandError(
        "vm1", "blockdev-mirror", {}, "GenericError", "Permission conflict")
    mirror = BlockMirror(_link(channel), "image1", NbdTarget("h2", 1, "image1"))
    with pytest.raises(BlockMirrorError) as info:
        mirror.start()
    assert "Permission conflict" in str(info.value) and "start" in str(info.value)
    assert _commands(channel) == ["blockdev-add", "blockdev-mirror", "blockdev-del"]


def test_error_str() -> None:
    err = BlockMirrorError("vm1", "image1", "complete", "no event", "qemu: boom\n")
    assert str(err) == "vm1: disk image1: complete: no event\nqemu: boom"
    assert str(BlockMirrorError("vm1", "d", "s", "x")) == "vm1: disk d: s: x"
