"""One exception root for the whole package, with semantic subclasses.

Library code raises these; only the runner (client job / server test) turns
them into verdicts (GOOD/FAIL/ERROR/TEST_NA).  Every error carries the
evidence needed to diagnose a run from its result directory alone.

    MigrationTestError
     +-- ConfigError            bad cfg file / params (file, line, key, value)
     +-- LabError               the embedded lab (namespaces, sshd, guest build)
     +-- RemoteError            SSH access to a host
     |    +-- RemoteCommandError   a command exited non-zero (command, status, output)
     |    +-- RemoteTimeout        a command or connection passed its deadline
     +-- SyncError              the sync server / client
     |    +-- SyncTimeout          a session did not complete by its deadline
     |    +-- SyncAborted          a peer aborted the session (host, reason)
     |         +-- PeerFailed          the controller reported a peer's failure
     +-- VMError                QEMU lifecycle
     |    +-- VMLaunchError        QEMU did not start (command line, exit code, output)
     |    +-- QMPError             a QMP command failed
     +-- GuestError             guest login / commands / checks
     |    +-- LoginError
     |    +-- ShellCommandError    command, status, output
     |    +-- GuestCheckError      an integrity check found bad data
     +-- MigrationError         a migration failed (status, error-desc, stats)
     +-- StorageError           images on shared storage
"""

from __future__ import annotations

import signal
from typing import Optional, Sequence


def tail(text: str, lines: int = 20) -> str:
    """The last `lines` lines of `text`, for error messages."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


class MigrationTestError(Exception):
    """Root of every error raised by this package."""


class ConfigError(MigrationTestError):
    """Bad configuration: names the file/line or the key and value."""

    def __init__(self, message: str, filename: Optional[str] = None,
                 line: Optional[int] = None) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        super().__init__(message)

    def __str__(self) -> str:
        where = ""
        if self.filename is not None:
            where = self.filename
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        return where + self.message


class LabError(MigrationTestError):
    """The embedded lab could not be built, repaired or torn down."""


class RemoteError(MigrationTestError):
    """A host could not be reached or used over SSH."""


class RemoteCommandError(RemoteError):
    """A command on a host exited non-zero."""

    def __init__(self, host: str, command: str, status: Optional[int],
                 output: str) -> None:
        self.host = host
        self.command = command
        self.status = status
        self.output = output
        super().__init__(host, command, status, output)

    def __str__(self) -> str:
        return (f"command on {self.host} failed with status {self.status}: "
                f"{self.command}\n{tail(self.output)}")


class RemoteTimeout(RemoteError):
    """A command or connection on a host passed its deadline."""


class SyncError(MigrationTestError):
    """The sync server or client failed."""


class SyncTimeout(SyncError):
    """A sync session did not complete before its deadline."""


#: Why a sync session ended early, as the sync server says it (the abort
#: frame's "kind"): a host failed, a host was interrupted (signal, Ctrl-C),
#: or the server lost a host's connection (nobody aborted: the link died).
ABORT_KINDS = ("failed", "interrupted", "lost")


class SyncAborted(SyncError):
    """A host aborted the sync session; carries that host, its reason and
    the kind of the abort (ABORT_KINDS)."""

    def __init__(self, session: str, host: str, reason: str, kind: str = "failed") -> None:
        self.session = session
        self.host = host
        self.reason = reason
        self.kind = kind if kind in ABORT_KINDS else "failed"
        super().__init__(session, host, reason)

    def __str__(self) -> str:
        if self.kind == "lost":
            return f"{self.reason} (sync session {self.session!r})"
        return f"sync session {self.session!r} aborted by {self.host}: {self.reason}"


class PeerFailed(SyncAborted):
    """The controller reported that another host failed or stopped answering
    (relay.py): the path of last resort, when the hosts cannot reach each other."""

    def __init__(self, host: str, reason: str, unresponsive: bool = False) -> None:
        self.unresponsive = unresponsive
        super().__init__("relay", host, reason)

    def __str__(self) -> str:
        what = "became unresponsive" if self.unresponsive else "failed"
        return f"stopped because {self.host} {what}: {self.reason}"


class VMError(MigrationTestError):
    """A QEMU process misbehaved."""


class VMLaunchError(VMError):
    """QEMU did not start: carries the command line, exit code and output."""

    def __init__(self, vm: str, command: Sequence[str], exitcode: Optional[int],
                 output: str) -> None:
        self.vm = vm
        self.command = list(command)
        self.exitcode = exitcode
        self.output = output
        super().__init__(vm, self.command, exitcode, output)

    def __str__(self) -> str:
        return (f"QEMU for {self.vm} failed to start (exit code {self.exitcode})\n"
                f"command: {' '.join(self.command)}\noutput:\n{tail(self.output)}")


class QMPError(VMError):
    """A QMP command failed or the monitor went away."""


class GuestError(MigrationTestError):
    """Something inside the guest failed."""


class LoginError(GuestError):
    """Could not log in on the guest's console."""

    def __init__(self, vm: str, reason: str, output: str = "") -> None:
        self.vm = vm
        self.reason = reason
        self.output = output
        super().__init__(vm, reason, output)

    def __str__(self) -> str:
        msg = f"login to {self.vm} failed: {self.reason}"
        if self.output:
            msg += f"\nlast console output:\n{tail(self.output)}"
        return msg


class ShellCommandError(GuestError):
    """A command in the guest shell exited non-zero or timed out."""

    def __init__(self, command: str, status: Optional[int], output: str) -> None:
        self.command = command
        self.status = status
        self.output = output
        super().__init__(command, status, output)

    def __str__(self) -> str:
        state = "timed out" if self.status is None else f"exited {self.status}"
        return f"guest command {self.command!r} {state}\n{tail(self.output)}"


class GuestCheckError(GuestError):
    """An integrity check (memory, disk, liveness) found bad data."""


class MigrationError(MigrationTestError):
    """A migration failed or ended in an unexpected state."""


class StorageError(MigrationTestError):
    """Images on shared storage could not be prepared or checked."""


# --- QEMU / migration engine details (appended) ---------------------------


class VMStateError(VMError):
    """A VM operation was called in a lifecycle state that does not allow it."""

    def __init__(self, vm: str, operation: str, state: str,
                 allowed: Sequence[str]) -> None:
        self.vm = vm
        self.operation = operation
        self.state = state
        self.allowed = list(allowed)
        super().__init__(vm, operation, state, self.allowed)

    def __str__(self) -> str:
        return (f"{self.vm}: {self.operation}() not allowed in state {self.state} "
                f"(allowed: {', '.join(self.allowed)})")


def describe_exit(code: Optional[int]) -> str:
    """A process's end in words: 'killed by signal 9 (SIGKILL)', 'exit status 1'."""
    if code is None:
        return "ended (exit status unknown)"
    if code < 0:
        try:
            name = f" ({signal.Signals(-code).name})"
        except ValueError:
            name = ""
        return f"killed by signal {-code}{name}"
    return f"exited with status {code}"


class VMDiedError(VMError):
    """The QEMU process exited while it was expected to be running."""

    def __init__(self, vm: str, exitcode: Optional[int], log_tail: str,
                 pid: Optional[int] = None, host: str = "", context: str = "") -> None:
        self.vm = vm
        self.exitcode = exitcode
        self.log_tail = log_tail
        self.pid = pid
        self.host = host
        self.context = context      # what followed, e.g. the peer's report
        super().__init__(vm, exitcode, log_tail)

    def __str__(self) -> str:
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        where = f" on {self.host}" if self.host else ""
        then = f"; {self.context}" if self.context else ""
        return (f"QEMU of {self.vm}{pid}{where} {describe_exit(self.exitcode)} while the "
                f"test needed it{then}\nQEMU log tail:\n{tail(self.log_tail)}")


class QMPCommandError(QMPError):
    """QEMU answered a QMP command with an error."""

    def __init__(self, vm: str, command: str, arguments: object,
                 error_class: str, desc: str) -> None:
        self.vm = vm
        self.command = command
        self.arguments = arguments
        self.error_class = error_class
        self.desc = desc
        super().__init__(vm, command, arguments, error_class, desc)

    def __str__(self) -> str:
        return (f"{self.vm}: QMP {self.command} {self.arguments!r} failed: "
                f"{self.error_class}: {self.desc}")


class MigrationFailed(MigrationError):
    """A migration ended in a non-completed state or passed its deadline.

    Carries the last status, QEMU's error-desc, the last query-migrate
    statistics (a plain dict) and the tail of the QEMU log(s).
    """

    def __init__(self, vm: str, reason: str, status: Optional[str] = None,
                 error_desc: Optional[str] = None,
                 stats: Optional[dict[str, object]] = None,
                 log_tail: str = "") -> None:
        self.vm = vm
        self.reason = reason
        self.status = status
        self.error_desc = error_desc
        self.stats = dict(stats or {})
        self.log_tail = log_tail
        super().__init__(vm, reason, status, error_desc)

    def __str__(self) -> str:
        msg = f"migration of {self.vm} failed: {self.reason} (status {self.status})"
        if self.error_desc:
            msg += f": {self.error_desc}"
        if self.log_tail:
            msg += f"\nQEMU log tail:\n{tail(self.log_tail)}"
        return msg


class MigrationTimeout(MigrationFailed):
    """A migration did not finish before its deadline."""


class SyncProtocolError(SyncError):
    """A sync peer broke the wire protocol: bad frame, bad MAC, bad message."""

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        self.reason = reason
        super().__init__(peer, reason)

    def __str__(self) -> str:
        return f"sync protocol error from {self.peer}: {self.reason}"


class SyncConnectTimeout(SyncTimeout):
    """The sync server could not be reached before the deadline."""

    def __init__(self, address: str, port: int, timeout: float,
                 last_error: str) -> None:
        self.address = address
        self.port = port
        self.timeout = timeout
        self.last_error = last_error
        super().__init__(address, port, timeout, last_error)

    def __str__(self) -> str:
        return (f"sync server {self.address}:{self.port} not reachable within "
                f"{self.timeout:.1f} s (last error: {self.last_error})")


class SyncBarrierTimeout(SyncTimeout):
    """A sync point did not complete by its deadline.

    `missing` lists the hosts that never arrived; None when the server itself
    did not answer in time (then nobody knows who is missing).
    """

    def __init__(self, session: str, tag: str, host: str, timeout: float,
                 missing: Optional[Sequence[str]]) -> None:
        self.session = session
        self.tag = tag
        self.host = host
        self.timeout = timeout
        self.missing = None if missing is None else list(missing)
        super().__init__(session, tag, host, timeout, self.missing)

    def __str__(self) -> str:
        where = f"sync session {self.session!r} point {self.tag!r}"
        if self.missing is None:
            return (f"{where}: {self.host} got no answer from the sync server "
                    f"within {self.timeout:.1f} s")
        return (f"{where}: {self.host} timed out after {self.timeout:.1f} s "
                f"waiting for {', '.join(self.missing)}")


class ConfigSyntaxError(ConfigError):
    """A Cartesian config line could not be parsed: file, line, column, text."""

    def __init__(self, message: str, filename: Optional[str] = None,
                 line: Optional[int] = None, column: Optional[int] = None,
                 text: str = "") -> None:
        super().__init__(message, filename, line)
        self.column = column
        self.text = text

    def __str__(self) -> str:
        where = ""
        if self.filename is not None:
            where = self.filename
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        msg = where + self.message
        if self.text:
            msg += f"\n    {self.text}"
            if self.column is not None:
                msg += "\n    " + " " * (self.column - 1) + "^"
        return msg


class MissingIncludeError(ConfigSyntaxError):
    """An ``include`` names a file that does not exist; names the including
    file and line and the path that was looked for."""

    def __init__(self, path: str, filename: Optional[str], line: Optional[int],
                 column: Optional[int] = None, text: str = "") -> None:
        super().__init__(f"included file not found: {path}", filename, line,
                         column, text)
        self.path = path


# --- reports (appended) ----------------------------------------------------


class ReportError(MigrationTestError):
    """A results directory cannot be turned into a report: names the file
    (or directory) and what is wrong with it."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(path, reason)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


# --- client install on hosts (appended) ------------------------------------


class WheelhouseError(MigrationTestError):
    """The controller could not build (or reuse) the wheelhouse of this suite:
    names the step, the command and its output."""

    def __init__(self, reason: str, command: Sequence[str] = (),
                 status: Optional[int] = None, output: str = "") -> None:
        self.reason = reason
        self.command = list(command)
        self.status = status
        self.output = output
        super().__init__(reason, self.command, status, output)

    def __str__(self) -> str:
        msg = f"wheelhouse: {self.reason}"
        if self.command:
            msg += f"\ncommand (status {self.status}): {' '.join(self.command)}"
        if self.output:
            msg += f"\noutput:\n{tail(self.output)}"
        return msg


class ClientInstallError(MigrationTestError):
    """Installing the suite into a virtualenv on a host failed: names the
    host, the step, what went wrong and the command output."""

    def __init__(self, host: str, step: str, reason: str, output: str = "") -> None:
        self.host = host
        self.step = step
        self.reason = reason
        self.output = output
        super().__init__(host, step, reason, output)

    def __str__(self) -> str:
        msg = f"client install on {self.host} failed at {self.step}: {self.reason}"
        if self.output:
            msg += f"\noutput:\n{tail(self.output)}"
        return msg


class HostPythonMismatch(ClientInstallError):
    """The host's Python cannot use the wheelhouse's platform wheels."""

    def __init__(self, host: str, python: str, host_version: str,
                 wheelhouse_version: str, reason: str) -> None:
        self.python = python
        self.host_version = host_version
        self.wheelhouse_version = wheelhouse_version
        super().__init__(host, "python check",
                         f"{python} on {host} is {host_version} but the wheelhouse "
                         f"was built for {wheelhouse_version}: {reason}")


# --- migration settings (appended) -----------------------------------------


class MigrationSettingsError(MigrationError):
    """QEMU refused a migration capability/parameter, or read back another value.

    `what` is "capability" or "parameter"; `requested` and `actual` are what
    was asked for and what query-migrate-capabilities/-parameters answered
    (None if QEMU does not know the name); `qemu_error` is QEMU's own error
    text when the set command itself failed.
    """

    def __init__(self, vm: str, what: str, name: str, requested: object,
                 actual: object = None, qemu_error: str = "") -> None:
        self.vm = vm
        self.what = what
        self.name = name
        self.requested = requested
        self.actual = actual
        self.qemu_error = qemu_error
        super().__init__(vm, what, name, requested, actual, qemu_error)

    def __str__(self) -> str:
        msg = f"{self.vm}: migration {self.what} {self.name}={self.requested!r} "
        if self.qemu_error:
            return msg + f"refused by QEMU: {self.qemu_error}"
        return msg + f"not taken (QEMU reports {self.actual!r})"
