"""Boot the tiny guest in a local QEMU with its serial console on pipes.

A small, dependency-free driver used by the accelerator probe and by the
guest builder's functional tests.  Scenario code talks to guests through the
VM engine (`multihost_migration.qemu`) and aexpect sessions instead.

    with GuestConsole(image, accel="tcg") as console:
        console.login(timeout=30)
        status, output = console.run("echo $((6*7))", timeout=10)
"""

from __future__ import annotations

import logging
import os
import re
import select
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, List, Optional, Sequence, Tuple, Type

from multihost_migration.errors import LoginError, ShellCommandError, VMError, VMLaunchError
from multihost_migration.lab.guest import GuestImage

log = logging.getLogger(__name__)

# Printed lines, not the echo of the typed command (which has ";" or "$?").
_BEGIN_RE = r"__MHM_BEGIN\n"
_STATUS_RE = r"__MHM_RC=(\d+)\n"


def qemu_command(guest: GuestImage, *, accel: str = "tcg",
                 qemu: str = "qemu-system-x86_64", memory_mib: int = 256,
                 machine: str = "pc", cpu: Optional[str] = None,
                 cache: str = "writethrough", disk: Optional[Path] = None,
                 attach_disk: bool = True, extra: Sequence[str] = ()) -> List[str]:
    """The contract's command line, serial console on QEMU's stdin/stdout.

    `cpu` None keeps QEMU's default model; `disk` replaces the guest's own
    disk; `attach_disk` False boots without one (the guest does not need it,
    and QEMU's image locking forbids sharing it with a running VM); `extra`
    is appended as is.
    """
    cpu_args = ["-cpu", cpu] if cpu else []
    drive = [
        "-drive", f"file={disk or guest.disk},if=none,id=disk0,format=qcow2,cache={cache}",
        "-device", "virtio-blk-pci,drive=disk0",
    ] if attach_disk else []
    return [
        qemu, "-machine", machine, "-accel", accel, *cpu_args,
        "-m", str(memory_mib), "-smp", "1",
        "-display", "none", "-nodefaults", "-no-reboot",
        "-kernel", str(guest.kernel), "-initrd", str(guest.initrd),
        "-append", guest.kernel_cmdline,
        "-chardev", "stdio,id=serial0,signal=off", "-serial", "chardev:serial0",
        *drive, *extra,
    ]


class GuestConsole:
    """A QEMU running the tiny guest, driven through its serial console."""

    def __init__(self, guest: GuestImage, *, accel: str = "tcg",
                 qemu: str = "qemu-system-x86_64", name: str = "mhm-guest",
                 machine: str = "pc", disk: Optional[Path] = None,
                 attach_disk: bool = True, extra: Sequence[str] = ()) -> None:
        self.guest = guest
        self.name = name
        self.command = qemu_command(guest, accel=accel, qemu=qemu, machine=machine,
                                    disk=disk, attach_disk=attach_disk, extra=extra)
        self.output = ""          # everything the console printed, \r removed
        self._pos = 0             # start of the not yet consumed output
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._stderr: Optional[IO[bytes]] = None
        self.started_at = 0.0

    def __enter__(self) -> "GuestConsole":
        self.start()
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    def start(self) -> None:
        if self._proc is not None:
            raise VMError(f"{self.name}: console QEMU already started")
        log.debug("%s: starting %s", self.name, " ".join(self.command))
        self._stderr = tempfile.TemporaryFile()
        self.started_at = time.monotonic()
        try:
            self._proc = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=self._stderr)
        except OSError as err:
            raise VMLaunchError(self.name, self.command, None, str(err)) from err
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)

    def qemu_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _read(self, wait: float) -> bool:
        """Read what is available within `wait` s; False once QEMU closed stdout."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(0.0, wait))
        if not ready:
            return True
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        self.output += data.decode(errors="replace").replace("\r", "")
        return True

    def expect(self, pattern: str, timeout: float) -> "re.Match[str]":
        """Wait for `pattern` in the output not consumed yet; consume up to it."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.output, self._pos)
            if match:
                self._pos = match.end()
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise VMError(f"{self.name}: no {pattern!r} on the console within "
                              f"{timeout:.1f} s; console tail:\n{self.output[-2000:]}")
            if not self._read(min(remaining, 0.5)):
                code = self._proc.wait(timeout=5) if self._proc else None
                raise VMLaunchError(self.name, self.command, code,
                                    self.output[-2000:] + self.qemu_stderr())

    def send(self, text: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(text.encode())
        self._proc.stdin.flush()

    def login(self, timeout: float) -> None:
        """Wait for login:, log in with the guest's password, wait for the prompt."""
        deadline = time.monotonic() + timeout
        g = self.guest
        try:
            self.expect(g.login_prompt_regex, deadline - time.monotonic())
            self.send(g.username + "\n")
            self.expect(g.password_prompt_regex, deadline - time.monotonic())
            self.send(g.password + "\n")
            self.expect(g.shell_prompt_regex, deadline - time.monotonic())
        except VMError as err:
            raise LoginError(self.name, str(err).splitlines()[0], self.output) from err

    def run(self, command: str, timeout: float) -> Tuple[int, str]:
        """Run a shell command; (exit status, its output).

        Markers printed before and after the command delimit its output, so
        this works whether or not the console echoes what is typed.
        """
        deadline = time.monotonic() + timeout
        start = self._pos
        self.send(f"echo __MHM_BEGIN; {command}\necho __MHM_RC=$?\n")
        try:
            begin = self.expect(_BEGIN_RE, timeout)
            match = self.expect(_STATUS_RE, deadline - time.monotonic())
            self.expect(self.guest.shell_prompt_regex, deadline - time.monotonic())
        except VMError as err:
            raise ShellCommandError(command, None, self.output[start:]) from err
        text = self.output[begin.end():match.start()]
        # Drop the prompt printed before the status line, and its echo.
        text = re.sub(r"echo __MHM_RC=\$\?\n$", "", text)
        prompt = re.search(self.guest.shell_prompt_regex, text)
        if prompt:
            text = text[:prompt.start()]
        return int(match.group(1)), text

    def check(self, command: str, timeout: float) -> str:
        """run() that raises ShellCommandError on a non-zero status."""
        status, output = self.run(command, timeout)
        if status != 0:
            raise ShellCommandError(command, status, output)
        return output

    def close(self, timeout: float = 5.0) -> None:
        """Stop QEMU: SIGTERM, wait, SIGKILL, wait."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        log.warning("%s: QEMU ignored SIGTERM, killing it", self.name)
                        proc.kill()
                        proc.wait(timeout=timeout)
            finally:
                for stream in (proc.stdin, proc.stdout):
                    if stream is not None:
                        try:
                            stream.close()
                        except OSError:
                            pass
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
