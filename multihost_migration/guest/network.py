"""Login and file copy over the guest's network, the serial console as fallback.

avocado-vt's `wait_for_login` logs in over the network by default; here the
guest runs busybox telnetd (port 23, started at boot when it has an address,
see lab/guest_initramfs.py), chosen over a small SSH server because the
guest's busybox has it and the lab's segment never leaves the machine: a
password in clear on a network namespace nobody else sees.  A real guest
with sshd needs a different `NetworkSession.open` (the same shell protocol
runs over it).

The VM's own methods are the API (qemu/vm.py): `vm.wait_for_login()` logs
in over the network when the VM has a NIC (`login_via = auto`, the
default), the serial console when it has none or the network login fails;
`vm.copy_files_to/from(host_path, guest_path)` copy in a network session
of their own.  Underneath, this module:

    session = network_login("vm1", "198.19.0.123", 30, username=..., ...)
    copy_files_to(session, vm, "local.bin", "/tmp/remote.bin")
    copy_files_from(session, vm, "/tmp/remote.bin", "back.bin")

File copy: the guest's busybox `nc -l` takes (or serves) one TCP connection
on a port of the guest's; the host sends (or reads) the bytes; the copy is
checked with md5sum on both ends.  The host reaches the guest through its
bridge's address on the segment.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import shlex
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import aexpect

from ..errors import GuestError, LoginError
from .console import ConsoleSession, _ensure_helper_on_path

if TYPE_CHECKING:
    from ..qemu.vm import VM

LOG = logging.getLogger(__name__)

TELNET_PORT = 23
COPY_PORTS = (20000, 29999)


class NetworkSession(ConsoleSession):
    """A shell on the guest over telnet (socat to ADDRESS:23), same protocol
    as the serial console's session."""

    def __init__(self, vm_name: str, address: str, port: int = TELNET_PORT,
                 **kwargs: object) -> None:
        super().__init__(vm_name, Path("/dev/null"), **kwargs)  # type: ignore[arg-type]
        self.address = address
        self.port = port

    def open(self) -> None:
        if self._session is not None:
            return
        command = (f"socat -,raw,echo=0 "
                   f"TCP:{shlex.quote(self.address)}:{int(self.port)},connect-timeout=5")
        self.log.debug("network login: %s", command)
        _ensure_helper_on_path()
        self._session = aexpect.ShellSession(
            command, auto_close=False, prompt=self.shell_prompt,
            output_func=self._log_line, output_params=())

    def _setup_shell(self, timeout: float) -> None:
        # Unlike the serial console's shell, this one ends when its connection
        # closes, and the kernel then hangs up its process group: what it
        # started in the background (dirtier, heartbeat...) must live on.
        super()._setup_shell(timeout)
        self.cmd("trap '' HUP", timeout=timeout)


def network_login(vm_name: str, address: str, timeout: float,
                  logger: Optional[logging.Logger] = None, *, username: str,
                  password: str, shell_prompt: str, login_prompt: str,
                  password_prompt: str) -> NetworkSession:
    """A logged-in NetworkSession to `address` (telnet); LoginError naming
    the VM and the address when there is none within `timeout`."""
    session = NetworkSession(vm_name, address, logger=logger, username=username,
                             password=password, shell_prompt=shell_prompt,
                             login_prompt=login_prompt, password_prompt=password_prompt)
    try:
        session.open()
        session.login(timeout)
    except (GuestError, aexpect.ExpectError, aexpect.ShellError) as err:
        session.close()
        reason = err.reason if isinstance(err, LoginError) else str(err)
        output = err.output if isinstance(err, LoginError) else ""
        raise LoginError(vm_name, f"no login over the network ({address}:{TELNET_PORT}): "
                         f"{reason}", output) from err
    except BaseException:
        session.close()
        raise
    return session


def login(vm: "VM", timeout: float = 60.0, network: bool = True) -> ConsoleSession:
    """A shell on `vm`: `vm.wait_for_login` over its network when it has a
    NIC (and `network`), the serial console as fallback; with `network`
    false, the serial console.  (The VM class's own method, also for a
    subclass that overrides wait_for_login on top of this.)"""
    from ..qemu.vm import VM   # noqa: F811  (qemu.vm imports this module)
    return VM.wait_for_login(vm, timeout, via="auto" if network else "serial")


def _detached(command: str) -> str:
    """`command` in the background, not a job of the shell: a job of the
    shell that ends interrupts its read, and busybox ash with echo off exits
    then (the session would close).  stdin never the terminal."""
    return f"({command} &)"


def _wait_done(session: ConsoleSession, port: int, deadline: float) -> None:
    """Until the guest's nc (for `port`) has exited (bounded by `deadline`)."""
    session.cmd(f"while pidof nc >/dev/null; do usleep 50000; done  # port {port}",
                timeout=max(5.0, deadline - time.monotonic()))


def _port() -> int:
    low, high = COPY_PORTS
    return low + secrets.randbelow(high - low)


def _md5(session: ConsoleSession, path: str, timeout: float) -> str:
    out = session.cmd(f"md5sum {shlex.quote(path)}", timeout=timeout)
    return out.split()[0] if out.split() else ""


def _connect(address: str, port: int, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection((address, port), timeout=5.0)
        except OSError as err:
            if time.monotonic() >= deadline:
                raise GuestError(f"cannot connect to {address}:{port} for a file "
                                 f"copy: {err}") from err
            time.sleep(0.1)


def _guest_address(vm: "VM") -> str:
    return vm.get_address()


def copy_files_to(session: ConsoleSession, vm: "VM", local: Union[str, Path],
                  remote: str, timeout: float = 120.0) -> None:
    """Copy the host's file `local` to `remote` in the guest, checked by md5
    (a file: a directory is a GuestError)."""
    if Path(local).is_dir():
        raise GuestError(f"copy to {vm.name}: {local} is a directory (files only)")
    data = Path(local).read_bytes()
    address, port = _guest_address(vm), _port()
    deadline = time.monotonic() + timeout
    session.cmd(_detached(f"nc -l -p {port} < /dev/null > {shlex.quote(remote)}"),
                timeout=timeout)
    with _connect(address, port, deadline) as sock:
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)   # the guest's nc closes once it has everything
    _wait_done(session, port, deadline)
    _check(session, remote, hashlib.md5(data).hexdigest(), f"{local} -> {vm.name}:{remote}",
           timeout)


def copy_files_from(session: ConsoleSession, vm: "VM", remote: str,
                    local: Union[str, Path], timeout: float = 120.0) -> None:
    """Copy `remote` from the guest to the host's `local`, checked by md5."""
    address, port = _guest_address(vm), _port()
    deadline = time.monotonic() + timeout
    session.cmd(_detached(f"nc -l -p {port} < {shlex.quote(remote)} > /dev/null"),
                timeout=timeout)
    chunks = []
    with _connect(address, port, deadline) as sock:
        # no shutdown of our side: busybox nc stops sending when it sees EOF
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    Path(local).write_bytes(data)
    _wait_done(session, port, deadline)
    _check(session, remote, hashlib.md5(data).hexdigest(), f"{vm.name}:{remote} -> {local}",
           timeout)


def _check(session: ConsoleSession, remote: str, md5: str, what: str,
           timeout: float) -> None:
    theirs = _md5(session, remote, timeout)
    if theirs != md5:
        raise GuestError(f"file copy {what}: md5 {md5} here, {theirs or 'none'} in "
                         "the guest")
    LOG.info("copied %s (md5 %s)", what, md5)


__all__ = ["NetworkSession", "copy_files_from", "copy_files_to", "login", "network_login"]
