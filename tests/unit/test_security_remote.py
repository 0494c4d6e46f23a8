"""Security review (issue #15): SFTP transfers have a deadline, and get_tree
keeps what a host sends inside the destination directory.

The host is a real paramiko SSH server in this process, over a socketpair:
one that serves a results tree with hostile names, one that never answers
the SFTP handshake (a hung host).
"""

from __future__ import annotations

import logging
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import paramiko
import pytest
from paramiko.common import AUTH_SUCCESSFUL, OPEN_SUCCEEDED

from multihost_migration.errors import RemoteTimeout
from multihost_migration.remote import RemoteHost, SshTarget

REG = stat.S_IFREG | 0o644
DIR = stat.S_IFDIR | 0o755
LNK = stat.S_IFLNK | 0o777
Entries = Dict[str, List[Tuple[str, int]]]


class _Server(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_SUCCEEDED


class _Handle(paramiko.SFTPHandle):
    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]


class _Tree(paramiko.SFTPServerInterface):
    """Directories as listed in `entries`; every file reads as its own path."""

    def __init__(self, server: paramiko.ServerInterface, entries: Entries) -> None:
        super().__init__(server)
        self.entries = entries

    def list_folder(self, path: str) -> Union[List[paramiko.SFTPAttributes], int]:
        listing = self.entries.get(path, [("deep.txt", REG)])
        out = []
        for name, mode in listing:
            attr = paramiko.SFTPAttributes()
            attr.filename, attr.st_mode, attr.st_size = name, mode, len(path + "/" + name)
            out.append(attr)
        return out

    def stat(self, path: str) -> Union[paramiko.SFTPAttributes, int]:
        attr = paramiko.SFTPAttributes()
        attr.st_mode, attr.st_size = REG, len(path.encode())
        return attr

    lstat = stat

    def open(self, path: str, flags: int,
             attr: paramiko.SFTPAttributes) -> Union[paramiko.SFTPHandle, int]:
        return _Handle(path.encode())


class _Hang(paramiko.SubsystemHandler):
    """A host whose SFTP server never answers."""
    release = threading.Event()

    def start_subsystem(self, name: str, transport: paramiko.Transport,
                        channel: paramiko.Channel) -> None:
        self.release.wait(30)


@pytest.fixture(scope="module")
def host_key() -> paramiko.RSAKey:
    return paramiko.RSAKey.generate(2048)


def _host(host_key: paramiko.RSAKey, handler: Any, *args: Any) -> Iterator[RemoteHost]:
    transports: List[paramiko.Transport] = []

    def factory(hostname: str, port: int, timeout: float) -> socket.socket:
        mine, theirs = socket.socketpair()
        server = paramiko.Transport(theirs)
        server.add_server_key(host_key)
        server.set_subsystem_handler("sftp", handler, *args)
        server.start_server(event=threading.Event(), server=_Server())  # in its thread
        transports.append(server)
        return mine

    target = SshTarget("fakehost", password="pw", accept_unknown_host_key=True,
                       connect_timeout=10.0)
    with RemoteHost(target, socket_factory=factory) as host:
        yield host
    for server in transports:
        server.close()


# -- get_tree confinement ---------------------------------------------------------


def test_get_tree_keeps_hostile_names_inside_the_destination(
        host_key: paramiko.RSAKey, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "results" / "h1"
    dest.mkdir(parents=True)
    (dest / "planted").symlink_to(outside)  # a local symlink is never followed
    entries: Entries = {
        "/res": [("ok.log", REG), ("sub", DIR), ("../escape.txt", REG),
                 (f"{tmp_path}/abs-escape.txt", REG), ("..", DIR), (".", DIR),
                 ("a/../../slash.txt", REG), ("link", LNK), ("planted", DIR), ("", REG)],
        "/res/sub": [("inner.log", REG)],
    }
    caplog.set_level(logging.WARNING, logger="multihost_migration.remote")
    for host in _host(host_key, paramiko.SFTPServer, _Tree, entries):
        count = host.get_tree("/res", dest, timeout=20.0)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                     if p.is_file())
    assert written == ["results/h1/ok.log", "results/h1/sub/inner.log"]
    assert count == 2
    assert list(outside.iterdir()) == []
    assert (dest / "ok.log").read_bytes() == b"/res/ok.log"
    warned = caplog.text
    for name in ("../escape.txt", "abs-escape.txt", "a/../../slash.txt", "link",
                 "planted"):
        assert name in warned, name


# -- deadlines -------------------------------------------------------------------


def _bounded(call: Any, limit: float) -> Tuple[Optional[BaseException], float]:
    """Run call() in a thread; (its exception, seconds taken); fails if it hangs."""
    box: List[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as err:  # handed to the test
            box.append(err)

    start = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the transfer hung for more than {limit} s"
    return (box[0] if box else None), time.monotonic() - start


def test_transfers_to_a_hung_host_end_at_their_timeout(host_key: paramiko.RSAKey,
                                                       tmp_path: Path) -> None:
    src = tmp_path / "params.json"
    src.write_text("{}")
    try:
        for host in _host(host_key, _Hang):
            err, took = _bounded(lambda: host.get_tree("/res", tmp_path / "r", timeout=1.0),
                                 10.0)
            assert isinstance(err, RemoteTimeout) and "1 s" in str(err), err
            assert took < 5.0
            err, took = _bounded(lambda: host.put(src, "/tmp/params.json", timeout=1.0), 10.0)
            assert isinstance(err, RemoteTimeout) and "fakehost" in str(err), err
            assert took < 5.0
    finally:
        _Hang.release.set()


def test_transfers_within_their_timeout_work(host_key: paramiko.RSAKey, tmp_path: Path) -> None:
    entries: Entries = {"/res": [("a.log", REG)]}
    for host in _host(host_key, paramiko.SFTPServer, _Tree, entries):
        assert host.get_tree("/res", tmp_path, timeout=20.0) == 1
    assert (tmp_path / "a.log").read_bytes() == b"/res/a.log"
