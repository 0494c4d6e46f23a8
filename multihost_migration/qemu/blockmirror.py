"""Disks copied during a migration: an NBD export on the destination, a
block mirror on the source (QMP only; the orchestration is storage_copy.py).

Destination (`NbdExport`), QEMU started with `-incoming defer` on a fresh
target image of the source's virtual size:

    nbd-server-start  addr=inet HOST:PORT [tls-creds=<server creds>]
    block-export-add  type=nbd id=mhm-export-<disk> node-name=<the top node of
                      drive_<disk>, from query-block> name=<disk> writable=true (5.2+;
                      nbd-server-add device=... writable=true before it)
    ... the migration ...
    nbd-server-stop   (removes the exports) once the guest runs here

Source (`BlockMirror`, one per disk):

    blockdev-add      driver=nbd node-name=mhm-nbd-<disk> server=inet HOST:PORT
                      export=<disk> [tls-creds=<client creds>]
    blockdev-mirror   job-id=mhm-mirror-<disk> device=drive_<disk>
                      target=mhm-nbd-<disk> sync=full|top [speed]
    wait for BLOCK_JOB_READY (the target caught up; from now on every guest
                      write is copied too, the job stays READY)
    ... RAM migration, paused before the switchover (vCPUs stopped) ...
    block-job-cancel  on the READY job: it copies what is still dirty and
                      ends with BLOCK_JOB_COMPLETED, the source keeps its own
                      image (no pivot); then blockdev-del of the NBD node
    ... migrate-continue: the device state goes, the guest runs there ...

`abort()` (a failed or cancelled migration): block-job-cancel force=true,
wait for the job to go, blockdev-del; the source image was never switched.

Everything works on the QEMU's `QemuLink` (its QMP channel and process),
so the unit tests drive it with a fake QMP channel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import MigrationError, QMPCommandError, QMPError, VMError
from .link import QemuLink

#: Seconds between query-block-jobs polls while waiting (events wake us earlier).
POLL_INTERVAL = 0.2
_JOB_EVENTS = ("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED",
               "BLOCK_JOB_ERROR")


def drive_id(disk: str) -> str:
    """The block backend QEMU's -drive gives a disk (cmdline.py names it)."""
    return f"drive_{disk}"


class BlockMirrorError(MigrationError):
    """The disk copy of a migration failed: which VM and disk, the step, what
    QEMU said (job status, error) and the QEMU log tail."""

    def __init__(self, vm: str, disk: str, step: str, detail: str,
                 log_tail: str = "") -> None:
        self.vm = vm
        self.disk = disk
        self.step = step
        self.detail = detail
        self.log_tail = log_tail
        super().__init__(vm, disk, step, detail, log_tail)

    def __str__(self) -> str:
        text = f"{self.vm}: disk {self.disk}: {self.step}: {self.detail}"
        return f"{text}\n{self.log_tail.strip()}" if self.log_tail.strip() else text


@dataclass(frozen=True)
class NbdTarget:
    """Where the source finds one disk's export."""

    host: str
    port: int
    export: str


@dataclass(frozen=True)
class MirrorProgress:
    """query-block-jobs of one mirror: bytes done of total, ready or not."""

    offset: int
    length: int
    ready: bool
    status: str

    @property
    def pct(self) -> float:
        return 100.0 * self.offset / self.length if self.length else 0.0


def node_of(qemu: QemuLink, disk: str) -> str:
    """The node name of the disk's top node (block-export-add takes node
    names only; -drive gives an automatic one): from query-block."""
    for device in qemu.execute("query-block") or []:
        if device.get("device") == drive_id(disk):
            node = (device.get("inserted") or {}).get("node-name")
            if node:
                return str(node)
    raise BlockMirrorError(qemu.name, disk, "export", f"no block device {drive_id(disk)} "
                           f"with a medium in query-block", qemu.log_tail())


def _inet(host: str, port: int) -> dict[str, Any]:
    return {"type": "inet", "host": host, "port": str(port)}


class NbdExport:
    """The destination's NBD server and its writable exports."""

    def __init__(self, qemu: QemuLink, tls_creds: Optional[str] = None) -> None:
        self.qemu = qemu
        self.tls_creds = tls_creds
        self.exports: list[str] = []
        self.running = False

    def start(self, host: str, port: int) -> None:
        args: dict[str, Any] = {"addr": {"type": "inet",
                                         "data": {"host": host, "port": str(port)}}}
        if self.tls_creds:
            args["tls-creds"] = self.tls_creds
        self.qemu.execute("nbd-server-start", args)
        self.running = True
        self.qemu.log.info("NBD server on %s:%s%s", host, port,
                           " (TLS)" if self.tls_creds else "")

    def add(self, disk: str) -> str:
        """Export the disk's node writable under the disk's name."""
        try:
            self.qemu.execute("block-export-add", {
                "type": "nbd", "id": f"mhm-export-{disk}", "node-name": node_of(self.qemu, disk),
                "name": disk, "writable": True})
        except QMPCommandError as err:
            if err.error_class != "CommandNotFound":
                raise
            self.qemu.execute("nbd-server-add", {"device": drive_id(disk), "name": disk,
                                                 "writable": True})
        self.exports.append(disk)
        return disk

    def stop(self) -> None:
        """nbd-server-stop: the exports go with the server.  Idempotent."""
        if not self.running:
            return
        self.running = False
        self.qemu.execute("nbd-server-stop")
        self.qemu.log.info("NBD server stopped (%s)", ", ".join(self.exports))


class BlockMirror:
    """One disk mirrored from this (source) QEMU into a destination export."""

    def __init__(self, qemu: QemuLink, disk: str, target: NbdTarget, sync: str = "full",
                 tls_creds: Optional[str] = None, speed: int = 0) -> None:
        if sync not in ("full", "top"):
            raise ValueError(f"mirror sync {sync!r}: full or top")
        self.qemu = qemu
        self.disk = disk
        self.target = target
        self.sync = sync
        self.tls_creds = tls_creds
        self.speed = speed
        self.job_id = f"mhm-mirror-{disk}"
        self.node = f"mhm-nbd-{disk}"
        self.started_at: Optional[float] = None
        self.ready_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        self.length = 0
        self.copied = 0
        self._node_added = False
        self._job_running = False
        self._mark = 0

    # -- evidence -------------------------------------------------------------

    def _error(self, step: str, detail: str) -> BlockMirrorError:
        return BlockMirrorError(self.qemu.name, self.disk, step, detail,
                                self.qemu.log_tail())

    def stats(self) -> dict[str, Any]:
        """Bytes and seconds of this copy, for results.json."""
        start = self.started_at
        ready = (self.ready_at - start) if start and self.ready_at else None
        total = (self.ended_at - start) if start and self.ended_at else None
        return {"disk": self.disk, "sync": self.sync, "bytes": self.copied or self.length,
                "length": self.length, "ready_s": ready, "total_s": total,
                "throughput_mbps": (self.length * 8 / ready / 1e6) if ready else None,
                "tls": bool(self.tls_creds)}

    # -- the steps ----------------------------------------------------------------

    def start(self) -> None:
        node: dict[str, Any] = {"driver": "nbd", "node-name": self.node,
                                "server": _inet(self.target.host, self.target.port),
                                "export": self.target.export}
        if self.tls_creds:
            node["tls-creds"] = self.tls_creds
        self._mark = self.qemu.channel.events.mark()
        self.started_at = time.monotonic()
        try:
            self.qemu.execute("blockdev-add", node)
            self._node_added = True
            args: dict[str, Any] = {"job-id": self.job_id, "device": drive_id(self.disk),
                                    "target": self.node, "sync": self.sync}
            if self.speed:
                args["speed"] = self.speed
            self.qemu.execute("blockdev-mirror", args)
            self._job_running = True
        except (QMPError, VMError) as err:
            self._del_node()
            raise self._error("start", f"{type(err).__name__}: {err}") from err
        self.qemu.log.info("mirroring %s to nbd://%s:%s/%s (sync=%s%s)", self.disk,
                           self.target.host, self.target.port, self.target.export,
                           self.sync, ", TLS" if self.tls_creds else "")

    def set_speed(self, speed: int) -> None:
        """block-job-set-speed (0: unlimited), e.g. once READY."""
        self.qemu.execute("block-job-set-speed", {"device": self.job_id, "speed": speed})

    def progress(self) -> Optional[MirrorProgress]:
        """The job as query-block-jobs has it (None once it is gone)."""
        for job in self.qemu.execute("query-block-jobs") or []:
            if job.get("device") == self.job_id:
                progress = MirrorProgress(int(job.get("offset", 0)), int(job.get("len", 0)),
                                          bool(job.get("ready")), str(job.get("status", "")))
                self.length = max(self.length, progress.length)
                return progress
        return None

    def _event(self, names: tuple[str, ...], timeout: float) -> Optional[dict[str, Any]]:
        def match(event: Any) -> bool:
            return (event.get("event") in names
                    and (event.get("data") or {}).get("device") == self.job_id)
        found = self.qemu.channel.events.wait_for(match, self._mark, max(0.0, timeout))
        return dict(found) if found is not None else None

    def _ended(self) -> Optional[dict[str, Any]]:
        """The job's end event (completed, cancelled) if it came."""
        return self._event(("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"), 0.0)

    def poll_ready(self) -> Optional[MirrorProgress]:
        """One look: the progress if the job is still running; raises if it
        ended (it must not end before we end it)."""
        ended = self._ended()
        if ended is not None:
            self._job_running = False
            data = ended.get("data") or {}
            raise self._error("mirror", f"job ended by itself ({ended.get('event')}): "
                              f"{data.get('error') or 'no error given'}")
        progress = self.progress()
        if progress is None:
            self._job_running = False
            raise self._error("mirror", "job vanished from query-block-jobs")
        if progress.ready and self.ready_at is None:
            self.ready_at = time.monotonic()
            self.qemu.log.info("%s mirror READY after %.2f s (%d MiB)", self.disk,
                               self.ready_at - (self.started_at or self.ready_at),
                               progress.length >> 20)
        return progress

    def wait_ready(self, timeout: float) -> MirrorProgress:
        """Until BLOCK_JOB_READY (the target caught up); the job's error or
        the deadline raises BlockMirrorError."""
        deadline = time.monotonic() + timeout
        while True:
            progress = self.poll_ready()
            assert progress is not None
            if progress.ready:
                return progress
            if time.monotonic() >= deadline:
                raise self._error("wait ready", f"not READY after {timeout:.0f} s "
                                  f"({progress.offset >> 20} of {progress.length >> 20} "
                                  f"MiB copied, status {progress.status})")
            self._event(("BLOCK_JOB_READY",) + _JOB_EVENTS,
                        min(POLL_INTERVAL, deadline - time.monotonic()))

    def complete(self, timeout: float) -> None:
        """The guest is stopped (pre-switchover): block-job-cancel on the
        READY job copies what is still dirty and ends it without a pivot;
        BLOCK_JOB_COMPLETED without error means the target is identical."""
        progress = self.poll_ready()
        if progress is None or not progress.ready:
            raise self._error("complete", "the mirror is not READY at the switchover")
        self.qemu.execute("block-job-cancel", {"device": self.job_id})
        event = self._event(("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"), timeout)
        self._job_running = False
        self.ended_at = time.monotonic()
        if event is None:
            raise self._error("complete", f"no BLOCK_JOB_COMPLETED within {timeout:.0f} s "
                              f"of block-job-cancel")
        data = event.get("data") or {}
        if event.get("event") != "BLOCK_JOB_COMPLETED" or data.get("error"):
            raise self._error("complete", f"{event.get('event')}: "
                              f"{data.get('error') or 'the job did not complete'}")
        self.copied = int(data.get("offset", 0) or 0)
        self.length = max(self.length, int(data.get("len", 0) or 0))
        self._del_node()
        self.qemu.log.info("%s mirror completed: %d MiB, target consistent", self.disk,
                           self.length >> 20)

    def abort(self, timeout: float = 30.0) -> None:
        """Best effort, for a failed or cancelled migration: end the job
        (force), drop the NBD node; the source image stays the guest's."""
        try:
            if self._job_running and self.qemu.is_alive():
                try:
                    self.qemu.execute("block-job-cancel", {"device": self.job_id,
                                                           "force": True})
                except (QMPError, VMError) as err:
                    self.qemu.log.debug("block-job-cancel %s: %s", self.job_id, err)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and self.progress() is not None:
                    self._event(_JOB_EVENTS, min(POLL_INTERVAL, deadline - time.monotonic()))
            self._job_running = False
            self.ended_at = self.ended_at or time.monotonic()
        except (QMPError, VMError) as err:
            self.qemu.log.warning("aborting mirror of %s: %s", self.disk, err)
        finally:
            self._del_node()

    def _del_node(self) -> None:
        if not self._node_added or not self.qemu.is_alive():
            return
        try:
            self.qemu.execute("blockdev-del", {"node-name": self.node})
            self._node_added = False
        except (QMPError, VMError) as err:
            self.qemu.log.warning("blockdev-del %s: %s", self.node, err)


__all__ = ["BlockMirror", "BlockMirrorError", "MirrorProgress", "NbdExport", "NbdTarget",
           "drive_id"]
