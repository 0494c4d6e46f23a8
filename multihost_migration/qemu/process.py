"""One QEMU OS process: launch with output to a log file, wait, kill with escalation."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from ..errors import VMError

#: Seconds to wait after each of SIGTERM and SIGKILL.
SIGNAL_GRACE = 5.0

#: Every QEMU this Python process started and has not seen exit: the last
#: line of defence, `kill_all_started()`, runs when a job ends whatever
#: state its VM objects were left in (e.g. interrupted mid-launch).
_STARTED: set["QemuProcess"] = set()
_STARTED_LOCK = threading.Lock()


def kill_all_started() -> list[int]:
    """Kill every QEMU this process started that is still running."""
    with _STARTED_LOCK:
        processes = list(_STARTED)
    killed = []
    for process in processes:
        if process.is_alive():
            killed.append(process.pid or 0)
            try:
                process.kill()
            except VMError:
                pass
        with _STARTED_LOCK:
            _STARTED.discard(process)
    return killed


def read_tail(path: Path, max_bytes: int = 8192) -> str:
    """The last `max_bytes` of a text file ('' if missing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


class QemuProcess:
    """A started QEMU; stdout and stderr go to `log_path` (appended)."""

    def __init__(self, name: str, log_path: Path, logger: logging.Logger) -> None:
        self.name = name
        self.log_path = log_path
        self.log = logger
        self._popen: Optional[subprocess.Popen[bytes]] = None

    @property
    def pid(self) -> Optional[int]:
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> Optional[int]:
        return self._popen.poll() if self._popen is not None else None

    def is_alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self, command: Sequence[str]) -> None:
        """Start QEMU.  Raises OSError if the binary cannot be executed."""
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"# {stamp} starting: {shlex.join(command)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                list(command), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        with _STARTED_LOCK:
            _STARTED.add(self)
        self.log.debug("QEMU pid %d", self._popen.pid)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` for exit; True if the process has exited."""
        if self._popen is None:
            return True
        try:
            self._popen.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> Optional[int]:
        """SIGTERM -> wait -> SIGKILL -> wait -> raise.  Returns the exit code."""
        popen = self._popen
        if popen is None:
            return None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if popen.poll() is not None:
                break
            self.log.debug("sending %s to QEMU pid %d", sig.name, popen.pid)
            try:
                popen.send_signal(sig)
            except ProcessLookupError:
                pass
            self.wait(SIGNAL_GRACE)
        if popen.poll() is None:
            raise VMError(f"{self.name}: QEMU pid {popen.pid} survived SIGKILL")
        with _STARTED_LOCK:
            _STARTED.discard(self)
        return popen.returncode

    def tail(self, max_bytes: int = 8192) -> str:
        return read_tail(self.log_path, max_bytes)
