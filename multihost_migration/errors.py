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


class SyncAborted(SyncError):
    """A host aborted the sync session; carries that host and its reason."""

    def __init__(self, session: str, host: str, reason: str) -> None:
        self.session = session
        self.host = host
        self.reason = reason
        super().__init__(session, host, reason)

    def __str__(self) -> str:
        return f"sync session {self.session!r} aborted by {self.host}: {self.reason}"


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
