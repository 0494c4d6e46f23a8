"""A measurement in the client machine, driven from the migrating host.

`ProbeSession` opens SSH to the client (the lab's `mhm-client` namespace
runs its own sshd, key only, like the hosts), runs probe.py's text there
with `python3 -c` (nothing installed on the client), and talks to it over
the channel's stdin/stdout: `mark()` when the migration completed,
`finish()` for the result.  Bounded: the probe stops itself after
`max_seconds`, every read has a deadline, and `close()` (also from
`__exit__`) closes the channel, which ends the probe at once.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Optional, Type

import paramiko

from multihost_migration.errors import GuestCheckError, MigrationTestError
from multihost_migration.remote import RemoteHost, SshTarget

log = logging.getLogger(__name__)

PROBE_SOURCE = Path(__file__).with_name("probe.py")


class NetworkCheckError(GuestCheckError):
    """A check of the guest's network, made from outside the guest, failed
    (or could not be made): the message names the guest, the network and
    what was seen."""


def probe_command(python: str, target: str, port: int, interval_ms: float,
                  max_seconds: float, tcp: bool, load: bool, ready_timeout: float,
                  forget_neighbour: bool = True) -> str:
    """The shell command the client runs: python3 -c <probe.py> ARGS."""
    source = PROBE_SOURCE.read_text()
    args = [target, str(port), f"{interval_ms:g}", f"{max_seconds:g}",
            "1" if tcp else "0", "1" if load else "0", f"{ready_timeout:g}",
            "1" if forget_neighbour else "0"]
    return shlex.join([python, "-c", source, *args])


class ProbeSession:
    """One probe against one guest address; use as a context manager."""

    def __init__(self, target: SshTarget, command: str, name: str) -> None:
        self.name = name
        self._remote = RemoteHost(target)
        self._command = command
        self._chan: Optional[paramiko.Channel] = None
        self._buf = b""
        self.ready: dict[str, Any] = {}

    def __enter__(self) -> "ProbeSession":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    def start(self, timeout: float) -> dict[str, Any]:
        """Connect, start the probe, wait for its `ready` line."""
        try:
            self._remote.connect()
            transport = self._remote.client.get_transport()
            if transport is None:
                raise NetworkCheckError(f"{self.name}: SSH to the client has no transport")
            chan = self._chan = transport.open_session(timeout=timeout)
            chan.exec_command(self._command)
        except (MigrationTestError, paramiko.SSHException, OSError) as err:
            self.close()
            raise NetworkCheckError(f"{self.name}: cannot start the network probe on the "
                                    f"client {self._remote.target.connect_address}: "
                                    f"{err}") from err
        self.ready = self._reply("ready", timeout)
        return self.ready

    def mark(self, timeout: float = 10.0) -> float:
        self._send("mark")
        return float(self._reply("marked", timeout))

    def finish(self, recover: float, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the guest's echo (at most `recover` s), check TCP, stop."""
        self._send(f"finish {recover:g}")
        result: dict[str, Any] = self._reply("result", recover + timeout)
        self.close()
        return result

    def close(self) -> None:
        chan, self._chan = self._chan, None
        if chan is not None:
            chan.close()
        self._remote.close()

    def _send(self, line: str) -> None:
        if self._chan is None:
            raise NetworkCheckError(f"{self.name}: the network probe is not running")
        try:
            self._chan.sendall((line + "\n").encode())
        except (OSError, paramiko.SSHException) as err:
            raise NetworkCheckError(f"{self.name}: network probe: {line}: {err}") from err

    def _reply(self, key: str, timeout: float) -> Any:
        """The value of `key` in the next JSON line from the probe."""
        deadline = time.monotonic() + timeout
        chan = self._chan
        while chan is not None:
            line, sep, rest = self._buf.partition(b"\n")
            if sep:
                self._buf = rest
                try:
                    msg = json.loads(line)
                except ValueError:
                    log.debug("%s: probe said %r", self.name, line[:200])
                    continue
                if isinstance(msg, dict) and key in msg:
                    return msg[key]
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            chan.settimeout(min(left, 1.0))
            try:
                data = chan.recv(65536)
            except TimeoutError:
                continue
            except OSError as err:
                raise NetworkCheckError(f"{self.name}: network probe: {err}") from err
            if not data:
                err_text = chan.recv_stderr(4096).decode(errors="replace") \
                    if chan.recv_stderr_ready() else ""
                raise NetworkCheckError(f"{self.name}: the network probe ended without "
                                        f"{key!r}: {err_text.strip()[-500:]}")
            self._buf += data
        raise NetworkCheckError(f"{self.name}: no {key!r} from the network probe within "
                                f"{timeout:.0f} s")
