"""Host side of the guest heartbeat (VM param `heartbeat = yes`).

The VM's ttyS1 is a QEMU chardev *client* socket.  Before QEMU starts, the
recorder listens on that socket; QEMU connects during startup, so the
heartbeat is connected before the guest can run, also on a migration
destination (no window where the first heartbeats after the switchover
are lost).  A thread reads the guest's "HB <seq> <guest_ns>" lines and
appends "host_epoch_ns seq guest_ns" to `<vm>-heartbeat.log`, stamped with
`time.time_ns()` on arrival (see guest/checks.py for the analysis).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Optional, TextIO

from ..errors import VMError
from ..guest.checks import HeartbeatRecord, parse_heartbeat_line

#: Seconds between checks of the stop flag while waiting for data.
_POLL = 0.2
_MAX_LINE = 4096


class HeartbeatRecorder:
    """Listens on `socket_path`, records heartbeats to `log_path`."""

    def __init__(self, socket_path: Path, log_path: Path,
                 logger: Optional[logging.Logger] = None) -> None:
        self.socket_path = socket_path
        self.log_path = log_path
        self.log = logger or logging.getLogger(__name__)
        self.records = 0
        self.last: Optional[HeartbeatRecord] = None
        self._listener: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Bind and listen (before QEMU is started), then read in a thread."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            listener.listen(1)
            listener.settimeout(_POLL)
        except OSError as err:
            listener.close()
            raise VMError(f"heartbeat: cannot listen on {self.socket_path}: {err}") from err
        self._listener = listener
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"heartbeat-{self.socket_path.parent.name}")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the sockets; idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                self.log.warning("heartbeat reader did not stop within %.1fs", timeout)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def _accept(self) -> Optional[socket.socket]:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError as err:
                self.log.warning("heartbeat accept: %s", err)
                return None
            conn.settimeout(_POLL)
            return conn
        return None

    def _run(self) -> None:
        conn = self._accept()
        if conn is None:
            return
        self.log.debug("heartbeat connected")
        with conn, open(self.log_path, "a", buffering=1) as out:
            pending = b""
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError as err:
                    self.log.debug("heartbeat recv: %s", err)
                    break
                stamp = time.time_ns()
                if not data:
                    break
                pending = self._consume(pending + data, stamp, out)
        self.log.debug("heartbeat reader done, %d records", self.records)

    def _consume(self, buffer: bytes, stamp: int, out: TextIO) -> bytes:
        *lines, rest = buffer.split(b"\n")
        for raw in lines:
            record = parse_heartbeat_line(stamp, raw.decode("ascii", "replace"))
            if record is not None:
                out.write(record.line())
                self.records += 1
                self.last = record
        return rest[-_MAX_LINE:]
