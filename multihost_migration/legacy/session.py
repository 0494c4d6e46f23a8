"""Legacy guest sessions (aexpect ShellSession as virttest returns them),
served by the suite's serial console session.

cmd() raises ShellCmdError on a non-zero status (unless `ok_status` or
`ignore_all_errors` say otherwise); cmd_output / cmd_status /
cmd_status_output never do.  A command the guest cannot find (exit 127,
"not found") is TEST_NA naming the program: the guest lacks what the test
needs.  A verdict a background thread raised is raised here first.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

from multihost_migration.errors import ShellCommandError
from multihost_migration.guest.console import ConsoleSession
from multihost_migration.legacy import context
from multihost_migration.legacy.hostutils import missing_program
from multihost_migration.legacy.unsupported import unsupported
from multihost_migration.verdicts import TestNAError

log = logging.getLogger(__name__)

#: aexpect's name for a failed command.
ShellCmdError = ShellCommandError


class LegacySession:
    """A logged-in guest shell with the aexpect ShellSession methods."""

    def __init__(self, console: ConsoleSession, vm_name: str) -> None:
        self._console = console
        self.vm_name = vm_name

    def _run(self, command: str, timeout: float) -> tuple[int, str]:
        _raise_pending()
        status, output = self._console.cmd_status_output(command, timeout=float(timeout))
        program = missing_program(command, status, output)
        if program is not None:
            raise TestNAError(f"the guest {self.vm_name} lacks {program!r} (guest command "
                              f"{command!r}: {output.strip()[-300:]})")
        return status, output

    def cmd(self, cmd: str, timeout: float = 60, internal_timeout: Any = None,
            print_func: Any = None, ok_status: Optional[Sequence[int]] = None,
            ignore_all_errors: bool = False, safe: bool = False) -> str:
        status, output = self._run(cmd, timeout)
        if status not in (ok_status or [0]) and not ignore_all_errors:
            raise ShellCmdError(cmd, status, output)
        return output

    def cmd_output(self, cmd: str, timeout: float = 60, internal_timeout: Any = None,
                   print_func: Any = None, safe: bool = False) -> str:
        return self._run(cmd, timeout)[1]

    def cmd_output_safe(self, cmd: str, timeout: float = 60) -> str:
        return self._run(cmd, timeout)[1]

    def cmd_status(self, cmd: str, timeout: float = 60, internal_timeout: Any = None,
                   print_func: Any = None, safe: bool = False) -> int:
        return self._run(cmd, timeout)[0]

    def cmd_status_output(self, cmd: str, timeout: float = 60, internal_timeout: Any = None,
                          print_func: Any = None, safe: bool = False) -> tuple[int, str]:
        return self._run(cmd, timeout)

    def get_command_output(self, cmd: str, timeout: float = 60, **_: Any) -> str:
        return self._run(cmd, timeout)[1]

    def get_command_status(self, cmd: str, timeout: float = 60, **_: Any) -> int:
        return self._run(cmd, timeout)[0]

    def sendline(self, cmd: str = "") -> None:
        _raise_pending()
        log.debug("%s: sendline %r", self.vm_name, cmd)
        self._console.sendline(cmd)

    def send(self, cmd: str = "") -> None:
        self.sendline(cmd)

    def read_nonblocking(self, internal_timeout: Any = None, timeout: float = 1.0) -> str:
        return self._console.read_nonblocking(timeout=timeout)

    def is_alive(self) -> bool:
        return self._console.is_open

    def close(self) -> None:
        self._console.close()

    def __getattr__(self, name: str) -> Any:
        raise unsupported(f"session.{name}")


def _raise_pending() -> None:
    try:
        ctx = context.current()
    except TestNAError:
        return
    except Exception:
        return
    ctx.raise_pending()
