"""Migration URIs for each transport, for both ends of a migration.

    tcp   dst listens  tcp:HOST:PORT          src connects  tcp:HOST:PORT
    unix  dst listens  unix:PATH              src connects  unix:PATH
    exec  dst runs     exec:CMD (reads the    src runs      exec:CMD (writes
                       stream on stdout)                    the stream on stdin)
    fd    dst reads    fd:NAME                src writes    fd:NAME
          (NAME registered with getfd on each side, see VM.pass_fd)
"""

from __future__ import annotations

import enum
import ipaddress
import re
import shlex
import socket
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from ..errors import ConfigError


class Transport(enum.Enum):
    """How the migration stream travels (the value is QEMU's URI scheme)."""

    TCP = "tcp"
    UNIX = "unix"
    EXEC = "exec"
    FD = "fd"

    @property
    def between_hosts(self) -> bool:
        """Whether it can carry a migration from one host to another."""
        return self is not Transport.UNIX

    @classmethod
    def parse(cls, value: Union["Transport", str]) -> "Transport":
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"unknown migration transport {value!r}; expected one "
                              f"of {TRANSPORTS}") from None


TRANSPORTS = tuple(t.value for t in Transport)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def incoming_uri(transport: Union[Transport, str], host: str = "0.0.0.0", port: int = 0,
                 target: Optional[str] = None) -> str:
    """URI for migrate-incoming.  `target` is the path / command / fd name."""
    kind = Transport.parse(transport)
    if kind is Transport.TCP:
        return f"tcp:{_host(host)}:{int(port)}"
    if not target:
        raise ConfigError(f"{kind.value} incoming migration needs a target "
                          f"(socket path, command or fd name)")
    return f"{kind.value}:{target}"


def outgoing_uri(transport: Union[Transport, str], host: str = "", port: int = 0,
                 target: Optional[str] = None) -> str:
    """URI for migrate on the source."""
    if Transport.parse(transport) is Transport.TCP:
        if not host or not port:
            raise ConfigError(f"tcp migration needs host and port (got {host!r}:{port})")
        return f"tcp:{_host(host)}:{int(port)}"
    return incoming_uri(transport, host, port, target)


def listening_port(query: Mapping[str, Any]) -> Optional[int]:
    """The inet port from a destination's query-migrate socket-address list."""
    for address in query.get("socket-address") or []:
        if address.get("type") == "inet" and address.get("port") is not None:
            return int(address["port"])
    return None


_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _exec_address(host: str, port: int) -> tuple[str, int]:
    """(host, port) checked for an exec command line, which QEMU runs with
    /bin/sh: an IP address or a host name (nothing a shell or socat would
    read as more), and a TCP port."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise ConfigError(f"exec migration host {host!r} is not an IP address "
                              "or a host name") from None
    number = int(port)
    if not 0 < number < 65536:
        raise ConfigError(f"exec migration port {port!r} is not a TCP port")
    return host, number


def exec_listen_command(host: str, port: int) -> str:
    """Destination exec: accept one TCP connection, copy it to QEMU's stdin."""
    host, number = _exec_address(host, port)
    return f"socat -u {shlex.quote(f'TCP-LISTEN:{number},bind={host},reuseaddr')} STDOUT"


def exec_connect_command(host: str, port: int) -> str:
    """Source exec: copy QEMU's migration stream to a TCP connection."""
    host, number = _exec_address(host, port)
    return f"socat -u STDIN {shlex.quote(f'TCP:{host}:{number}')}"


def free_port(host: str = "0.0.0.0") -> int:
    """A TCP port that was free a moment ago (for transports that cannot
    report the port they bound, such as exec)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_listening(port: int) -> bool:
    """True if some socket on this host listens on TCP `port` (from /proc)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A" and \
                    int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_listening(port: int, timeout: float) -> bool:
    """Wait until TCP `port` is listening; False at the deadline."""
    deadline = time.monotonic() + timeout
    while not is_listening(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
