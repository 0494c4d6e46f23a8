"""SSH access to a test host (paramiko): run commands, stream output, copy files.

Host keys are verified against a known_hosts file by default; accepting
unknown keys is an explicit choice (`accept_unknown_host_key=True`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Optional, Tuple

import paramiko

from multihost_migration.errors import RemoteCommandError, RemoteError, RemoteTimeout

log = logging.getLogger(__name__)

SocketFactory = Callable[[str, int, float], socket.socket]


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach one host."""
    hostname: str
    port: int = 22
    user: str = "root"
    key_filename: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)  # never in logs or results
    known_hosts: Optional[str] = None
    accept_unknown_host_key: bool = False
    connect_timeout: float = 15.0
    address: Optional[str] = None   # where to connect, if not `hostname` (the host id)

    @property
    def connect_address(self) -> str:
        return self.address or self.hostname

    @classmethod
    def parse(cls, spec: str, **defaults: object) -> "SshTarget":
        """`[user@]host[:port]`, as autotest accepts it."""
        user, _, hostport = spec.rpartition("@")
        host, port = hostport, None
        if hostport.count(":") == 1:
            host, _, port_text = hostport.partition(":")
            if not port_text.isdigit():
                raise RemoteError(f"bad port in host spec {spec!r}")
            port = int(port_text)
        if not host:
            raise RemoteError(f"empty host name in host spec {spec!r}")
        fields: dict[str, object] = dict(defaults)
        fields["hostname"] = host
        if user:
            fields["user"] = user
        if port is not None:
            fields["port"] = port
        return cls(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str
    duration: float


class RemoteHost:
    """A connection to one host. Use as a context manager."""

    def __init__(self, target: SshTarget, socket_factory: Optional[SocketFactory] = None) -> None:
        self.target = target
        self.name = target.hostname
        self._socket_factory = socket_factory
        self._client: Optional[paramiko.SSHClient] = None
        self._lock = threading.Lock()

    def __enter__(self) -> "RemoteHost":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        t = self.target
        client = paramiko.SSHClient()
        if t.known_hosts:
            client.load_host_keys(t.known_hosts)
        client.set_missing_host_key_policy(
            paramiko.AutoAddPolicy() if t.accept_unknown_host_key else paramiko.RejectPolicy())
        sock = None
        try:
            if self._socket_factory is not None:
                sock = self._socket_factory(t.connect_address, t.port, t.connect_timeout)
            client.connect(
                t.connect_address, port=t.port, username=t.user, key_filename=t.key_filename,
                password=t.password, timeout=t.connect_timeout, banner_timeout=t.connect_timeout,
                auth_timeout=t.connect_timeout, allow_agent=False,
                look_for_keys=t.key_filename is None and t.password is None, sock=sock)
        except paramiko.BadHostKeyException as err:
            raise RemoteError(f"{t.hostname}: host key does not match {t.known_hosts}: "
                              "possible man-in-the-middle; fix known_hosts") from err
        except paramiko.SSHException as err:
            if "not found in known_hosts" in str(err):
                raise RemoteError(
                    f"{t.hostname}: unknown host key (not in {t.known_hosts or 'known_hosts'}); "
                    "add it, or pass the option to accept unknown host keys") from err
            if isinstance(err, paramiko.AuthenticationException):
                raise RemoteError(f"{t.user}@{t.hostname}:{t.port}: authentication "
                                  f"failed ({err})") from err
            raise RemoteError(f"{t.hostname}:{t.port}: SSH failed: {err}") from err
        except socket.timeout as err:
            raise RemoteTimeout(f"{t.hostname}:{t.port}: connection timed out after "
                                f"{t.connect_timeout:.0f} s") from err
        except OSError as err:
            raise RemoteError(f"{t.hostname}:{t.port}: cannot connect: "
                              f"{err.strerror or err}") from err
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def ping(self, timeout: float = 10.0) -> bool:
        """Does the host's sshd answer a keepalive request within `timeout`?
        (A frozen host keeps its TCP connection but answers nothing.)"""
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            return False
        answered = threading.Event()

        def ask() -> None:
            try:   # any reply (sshd refuses this request) is a sign of life
                transport.global_request("keepalive@openssh.com", wait=True)
                answered.set()
            except (paramiko.SSHException, OSError, EOFError):
                pass

        threading.Thread(target=ask, name=f"ping-{self.name}", daemon=True).start()
        return answered.wait(timeout)

    def abandon(self) -> None:
        """Drop the connection without a goodbye (an unresponsive host)."""
        client, self._client = self._client, None
        if client is not None:
            transport = client.get_transport()
            if transport is not None:
                transport.sock.close()   # ends every wait on it
            client.close()

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            raise RemoteError(f"{self.name}: not connected")
        return self._client

    def run(self, command: str, timeout: float = 60.0, check: bool = True,
            on_line: Optional[Callable[[str], None]] = None,
            get_pty: bool = False,
            cancel: Optional[threading.Event] = None,
            outbox: Optional["queue.SimpleQueue[str]"] = None) -> CommandResult:
        """Run `command` with a deadline; on_line gets stdout lines as they arrive.

        With get_pty the remote command gets SIGHUP when the connection drops
        (stdout and stderr are then merged): the way to make sure a remote job
        dies with its controller.  Lines put into `outbox` while it runs go to
        its standard input.
        """
        start = time.monotonic()
        deadline = start + timeout
        log.debug("%s: run %s", self.name, command)
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise RemoteError(f"{self.name}: SSH connection is closed")
        try:
            chan = transport.open_session(timeout=timeout)
        except (paramiko.SSHException, OSError) as open_err:
            raise RemoteError(f"{self.name}: cannot open an SSH channel: {open_err}") \
                from open_err
        try:
            if get_pty:
                chan.get_pty(width=500)
            chan.exec_command(command)
            if not get_pty:
                chan.shutdown_write()
            out, err = _collect(chan, deadline, on_line, cancel, outbox=outbox)
            if cancel is not None and cancel.is_set() and not chan.exit_status_ready():
                raise RemoteTimeout(f"{self.name}: interrupted command did not exit in time "
                                    f"(hung up on it): {command}")
            if not chan.exit_status_ready():
                raise RemoteTimeout(f"{self.name}: command timed out after {timeout:.0f} s: "
                                    f"{command}\n{(out + err)[-2000:]}")
            status = chan.recv_exit_status()
        finally:
            chan.close()
        result = CommandResult(command, status, out, err, time.monotonic() - start)
        if check and status != 0:
            raise RemoteCommandError(self.name, command, status, out + err)
        return result

    def put(self, local: Path, remote: str, timeout: float = 300.0) -> None:
        """Copy one file to the host; RemoteTimeout after `timeout` seconds."""
        with self._sftp(timeout, f"copying {local} to {remote}") as (sftp, check):
            sftp.put(str(local), remote, callback=check)

    def get_tree(self, remote: str, local: Path, timeout: float = 600.0) -> int:
        """Copy a remote directory tree into `local`; returns the number of files.

        Only plain names are written, inside `local`: a name with a slash, "",
        "." or "..", a remote symlink or special file, or a local symlink in
        the way is skipped with a warning.  RemoteTimeout after `timeout` s.
        """
        count = 0
        with self._sftp(timeout, f"copying {remote} to {local}") as (sftp, check):
            stack = [(PurePosixPath(remote), local)]
            while stack:
                rdir, ldir = stack.pop()
                ldir.mkdir(parents=True, exist_ok=True)
                for entry in sftp.listdir_attr(str(rdir)):
                    check()
                    lpath = self._confined(ldir, rdir, entry)
                    if lpath is None:
                        continue
                    rpath, mode = rdir / entry.filename, entry.st_mode or 0
                    if stat.S_ISDIR(mode):
                        stack.append((rpath, lpath))
                    else:
                        sftp.get(str(rpath), str(lpath), callback=check)
                        count += 1
        return count

    def _confined(self, ldir: Path, rdir: PurePosixPath,
                  entry: paramiko.SFTPAttributes) -> Optional[Path]:
        """Where `entry` of `rdir` goes in `ldir`, or None (warned) if nowhere."""
        name, mode = entry.filename, entry.st_mode or 0
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            why = "not a plain file name"
        elif not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            why = f"not a regular file or directory (mode {mode:o})"
        elif (ldir / name).is_symlink():
            why = f"{ldir / name} is a local symlink"
        else:
            return ldir / name
        log.warning("%s: not copied: %r in %s: %s", self.name, name, str(rdir), why)
        return None

    @contextlib.contextmanager
    def _sftp(self, timeout: float,
              what: str) -> Iterator[Tuple[paramiko.SFTPClient, Callable[..., None]]]:
        """An SFTP session that ends with RemoteTimeout `timeout` s from now.

        A timer closes the channel at the deadline, which ends any wait on it
        (a hung host answers nothing); `check` raises once the deadline passed.
        """
        deadline = time.monotonic() + timeout
        expired = threading.Event()

        def timed_out() -> RemoteTimeout:
            return RemoteTimeout(f"{self.name}: {what} did not finish within {timeout:g} s")

        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise RemoteError(f"{self.name}: SSH connection is closed")
        try:
            chan = transport.open_session(timeout=timeout)
        except (paramiko.SSHException, OSError) as err:
            if time.monotonic() >= deadline:
                raise timed_out() from err
            raise RemoteError(f"{self.name}: cannot open an SSH channel: {err}") from err

        def expire() -> None:
            expired.set()
            chan.close()

        def check(*_progress: int) -> None:
            if time.monotonic() >= deadline:
                expire()
                raise timed_out()

        timer = threading.Timer(max(deadline - time.monotonic(), 0.0), expire)
        timer.daemon = True
        timer.start()
        try:
            chan.settimeout(timeout)
            chan.invoke_subsystem("sftp")
            sftp = paramiko.SFTPClient(chan)
            try:
                yield sftp, check
            finally:
                sftp.close()
        except (OSError, EOFError, paramiko.SSHException) as err:
            if expired.is_set() or time.monotonic() >= deadline:
                raise timed_out() from err
            raise
        finally:
            timer.cancel()
            chan.close()


#: sshd may send a command's exit status before the last of its output (the
#: pipe is still being read when the child is reaped): after the status, wait
#: this long for the end of the output (EOF), which a daemon the command left
#: holding its stdout would otherwise delay until the deadline.
EOF_GRACE = 2.0


def _collect(chan: paramiko.Channel, deadline: float,
             on_line: Optional[Callable[[str], None]],
             cancel: Optional[threading.Event] = None,
             cancel_grace: float = 8.0,
             outbox: Optional["queue.SimpleQueue[str]"] = None) -> tuple[str, str]:
    """Read a channel to its end or deadline.  When `cancel` is set, the
    remote command gets Ctrl-C (SIGINT, with a pty) and `cancel_grace`
    seconds to clean up and exit."""
    out: list[bytes] = []
    err: list[bytes] = []
    pending = b""
    interrupted = False
    exited_at: Optional[float] = None
    chan.settimeout(0.2)
    while time.monotonic() < deadline:
        if cancel is not None and cancel.is_set() and not interrupted:
            interrupted = True
            log.info("interrupting the remote command (Ctrl-C)")
            try:
                chan.send(b"\x03")
            except (OSError, paramiko.SSHException):
                break
            deadline = min(deadline, time.monotonic() + cancel_grace)
        while outbox is not None and not outbox.empty():
            try:
                chan.sendall((outbox.get_nowait() + "\n").encode())
            except (OSError, paramiko.SSHException, queue.Empty):
                break
        got = False
        if chan.recv_ready():
            data = chan.recv(65536)
            out.append(data)
            got = bool(data)
            if on_line is not None:
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line.decode(errors="replace").rstrip("\r"))
        if chan.recv_stderr_ready():
            err.append(chan.recv_stderr(65536))
            got = True
        if not got:
            if chan.exit_status_ready() and not chan.recv_ready() \
                    and not chan.recv_stderr_ready():
                exited_at = exited_at or time.monotonic()
                if chan.eof_received or time.monotonic() - exited_at > EOF_GRACE:
                    break
                time.sleep(0.02)   # the status is in: status_event no longer waits
            chan.status_event.wait(0.05)
    if on_line is not None and pending:
        on_line(pending.decode(errors="replace"))
    return b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace")


def default_known_hosts() -> Optional[str]:
    path = os.path.expanduser("~/.ssh/known_hosts")
    return path if os.path.exists(path) else None
