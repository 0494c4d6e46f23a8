"""Login sessions on a guest's serial console (aexpect over socat).

QEMU exposes the guest's ttyS0 as a unix socket server (chardev socket,
server=on,wait=off, with a logfile).  A session runs
`socat -,raw,echo=0 UNIX-CONNECT:<socket>` under aexpect and speaks to the
guest's getty / shell through it.  Only one client may be connected at a
time, so the VM keeps the latest session and closes it before opening a new
one.

    session = ConsoleSession("vm1", Path(".../serial.sock"), LoginConfig())
    session.open()
    session.login(timeout=60)
    session.cmd("uname -r")
    session.close()
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional

import aexpect

from ..errors import GuestError, LoginError, ShellCommandError

LOG = logging.getLogger(__name__)

_LOGIN_FAILED = re.compile(r"Login incorrect|Authentication failure", re.I)


def _ensure_helper_on_path() -> None:
    """aexpect finds `aexpect_helper` via PATH; a venv run without activation
    has it only beside the interpreter, so add that directory (once)."""
    bindir = str(Path(sys.executable).parent)
    paths = os.environ.get("PATH", "").split(os.pathsep)
    if bindir not in paths and (Path(bindir) / "aexpect_helper").exists():
        os.environ["PATH"] = os.pathsep.join([*paths, bindir])


#: Terminal control sequences a shell may print after its prompt (busybox
#: ash line editing asks for the cursor position with ESC[6n).
_CSI_TAIL = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def tolerant(pattern: str) -> str:
    """`pattern` ending in `$`, also matching when escape codes follow."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + _CSI_TAIL + "$"
    return pattern


def _clean(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "")


class ConsoleSession:
    """A shell on a VM's serial console.  Not shared between threads."""

    def __init__(self, vm_name: str, socket_path: Path, username: str = "root",
                 password: str = "mhm", shell_prompt: str = r"mhm-guest# $",
                 login_prompt: str = r"login: $",
                 password_prompt: str = r"[Pp]assword: $",
                 logger: Optional[logging.Logger] = None) -> None:
        self.vm_name = vm_name
        self.socket_path = socket_path
        self.username = username
        self.password = password
        self.shell_prompt = tolerant(shell_prompt)
        self.login_prompt = tolerant(login_prompt)
        self.password_prompt = tolerant(password_prompt)
        self.log = logger or LOG
        self._session: Optional[Any] = None

    @property
    def is_open(self) -> bool:
        return self._session is not None

    def _require(self) -> Any:
        if self._session is None:
            raise GuestError(f"{self.vm_name}: console session is not open")
        return self._session

    def open(self) -> None:
        """Start socat under aexpect, connected to the serial socket."""
        if self._session is not None:
            return
        command = (f"socat -,raw,echo=0 "
                   f"UNIX-CONNECT:{shlex.quote(str(self.socket_path))}")
        self.log.debug("console: %s", command)
        _ensure_helper_on_path()
        self._session = aexpect.ShellSession(
            command, auto_close=False, prompt=self.shell_prompt,
            output_func=self._log_line, output_params=())

    def _log_line(self, line: str) -> None:
        self.log.debug("console| %s", line.rstrip("\r"))

    def login(self, timeout: float = 60.0) -> None:
        """Reach a shell prompt: log in at "login:" or reuse a live shell.

        After a migration the destination's console continues the source's
        shell, so an already-logged-in prompt is accepted as is.
        """
        session = self._require()
        deadline = time.monotonic() + timeout
        patterns = [self.login_prompt, self.password_prompt, self.shell_prompt]
        sent_password = False
        output = ""
        session.sendline("")
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoginError(self.vm_name, f"no shell prompt within {timeout:.0f}s",
                                 _clean(output))
            try:
                index, text = session.read_until_last_line_matches(
                    patterns, timeout=min(remaining, 3.0), internal_timeout=0.2)
            except aexpect.ExpectTimeoutError as err:
                output += err.output
                if _LOGIN_FAILED.search(err.output):
                    raise LoginError(self.vm_name, "login incorrect",
                                     _clean(output)) from None
                session.sendline("")
                continue
            except aexpect.ExpectProcessTerminatedError as err:
                raise LoginError(self.vm_name, "console client exited (is the VM "
                                 "running?)", _clean(output + err.output)) from None
            output += text
            if index == 0:
                if sent_password and _LOGIN_FAILED.search(text):
                    raise LoginError(self.vm_name, "login incorrect", _clean(output))
                session.sendline(self.username)
            elif index == 1:
                session.sendline(self.password)
                sent_password = True
            else:
                break
        self._setup_shell(max(5.0, deadline - time.monotonic()))

    def _setup_shell(self, timeout: float) -> None:
        # Without echo busybox ash reads plain lines: no line-editing redraws
        # and no echoed commands to strip from outputs.
        session = self._require()
        # `set +m`: no job-control "Done" notices mixed into command output.
        session.cmd_output("stty -echo 2>/dev/null; set +m; export TERM=dumb",
                           timeout=timeout)
        status = self.cmd_status_output("true", timeout=timeout)[0]
        if status != 0:
            raise LoginError(self.vm_name, f"shell not usable ('true' exited {status})")

    def sendline(self, text: str = "") -> None:
        self._require().sendline(text)

    def read_nonblocking(self, timeout: float = 1.0) -> str:
        return _clean(self._require().read_nonblocking(internal_timeout=0.1,
                                                       timeout=timeout))

    def read_until_output_matches(self, patterns: list[str],
                                  timeout: float = 60.0) -> tuple[int, str]:
        """Wait for one of `patterns` (regexes) in the console output."""
        try:
            index, text = self._require().read_until_output_matches(
                patterns, timeout=timeout, internal_timeout=0.2)
        except aexpect.ExpectError as err:
            raise ShellCommandError(f"<wait for {patterns}>", None,
                                    _clean(err.output)) from None
        return int(index), _clean(text)

    def cmd_status_output(self, command: str, timeout: float = 60.0) -> tuple[int, str]:
        """Run `command`; return (exit status, output).  Raises on timeout.

        The exit status comes back inside a marker line with a fresh nonce
        (`echo __MHM_<nonce>_$?__`), so prompts redrawn by the shell, job
        notices ("[1]+ Killed ...") and output a previous background job
        prints never pass for the status: only the marker line does.
        """
        session = self._require()
        try:  # drop what arrived since the last command (prompts, job notices)
            session.read_nonblocking(internal_timeout=0.05, timeout=0.2)
        except aexpect.ExpectError:
            pass
        marker = f"__MHM_{secrets.token_hex(4)}"
        pattern = re.compile(rf"{marker}_(\d+)__")
        session.sendline(command)
        session.sendline(f"echo {marker}_$?__")
        try:
            _, text = session.read_until_output_matches(
                [pattern.pattern], timeout=timeout, internal_timeout=0.1)
        except aexpect.ExpectTimeoutError as err:
            raise ShellCommandError(command, None, _clean(err.output)) from None
        except aexpect.ExpectError as err:
            raise ShellCommandError(command, None, f"console closed: "
                                    f"{_clean(err.output)}") from None
        match = pattern.search(text)
        assert match is not None
        output = self._strip_prompts(_clean(text[:match.start()]))
        status = int(match.group(1))
        self.log.debug("guest cmd %r -> %s", command, status)
        return status, output

    def _strip_prompts(self, text: str) -> str:
        prompt = re.compile(self.shell_prompt.rstrip("$"))
        lines = [prompt.sub("", line) for line in text.split("\n")]
        lines = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line) for line in lines]
        while lines and not lines[0].strip():
            lines.pop(0)
        return "\n".join(lines)

    def cmd(self, command: str, timeout: float = 60.0) -> str:
        """Run `command`; return its output; ShellCommandError if non-zero."""
        status, output = self.cmd_status_output(command, timeout)
        if status != 0:
            raise ShellCommandError(command, status, output)
        return output

    def cmd_output(self, command: str, timeout: float = 60.0) -> str:
        return self.cmd_status_output(command, timeout)[1]

    def close(self) -> None:
        """Stop socat and the aexpect helper, reaping both.  Idempotent."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def __enter__(self) -> "ConsoleSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Name the lead's guide uses.
ShellSession = ConsoleSession
