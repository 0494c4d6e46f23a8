"""Security review (issue #15): MultihostMigration.__init__ leaves no sync
server and no AbortWatch thread behind when disk preparation fails."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Iterator, List, Set

import pytest

from multihost_migration import migration
from multihost_migration.errors import SyncAborted, StorageError
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.sync import SyncData, SyncServer, new_secret

SECRET = new_secret()


class LoopbackSyncServer(SyncServer):
    """The master's sync server, on loopback only; remembers every instance."""
    instances: List[SyncServer] = []

    def __init__(self, address: str, port: int, secret: Any = None) -> None:
        super().__init__("127.0.0.1", port, secret, handshake_timeout=1.0)
        self.instances.append(self)


class DiskPrepFails(migration.MultihostMigration):
    def _prepare_disks(self) -> None:
        raise StorageError("cannot create image: disk full (test)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _params(hostid: str, port: int) -> Params:
    return Params({"hosts": ["h1", "h2"], "hostid": hostid, "job_id": "leak",
                   "sync_secret": SECRET, "sync_port": str(port), "vms": "vm1",
                   "address_h1": "127.0.0.1", "address_h2": "127.0.0.1",
                   "sync_timeout": "5", "test_timeout": "60"})


_BEFORE: Set[threading.Thread] = set()


def _ours() -> List[str]:
    """Sync server and abort-watch threads started since the test began."""
    return [t.name for t in threading.enumerate() if t not in _BEFORE
            and t.name.startswith(("abort-watch-", "sync-server-"))]


def _wait_gone(timeout: float) -> List[str]:
    deadline = time.monotonic() + timeout
    while _ours() and time.monotonic() < deadline:
        time.sleep(0.05)
    return _ours()


@pytest.fixture(autouse=True)
def loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    LoopbackSyncServer.instances = []
    monkeypatch.setattr(migration, "SyncServer", LoopbackSyncServer)
    _BEFORE.clear()
    _BEFORE.update(threading.enumerate())
    yield
    for srv in LoopbackSyncServer.instances:
        srv.stop()


class _Test:
    outputdir = "."


def test_master_leaves_no_server_and_no_watch_when_disk_prep_fails() -> None:
    with pytest.raises(StorageError, match="disk full"):
        DiskPrepFails(_Test(), _params("h1", _free_port()), Env())
    assert len(LoopbackSyncServer.instances) == 1
    assert LoopbackSyncServer.instances[0].state.value == "stopped"
    assert _wait_gone(2.0) == []


def test_peer_leaves_no_watch_and_releases_the_master_when_disk_prep_fails() -> None:
    port = _free_port()
    with SyncServer("127.0.0.1", port, SECRET) as master_server:
        with pytest.raises(StorageError, match="disk full"):
            DiskPrepFails(_Test(), _params("h2", port), Env())
        assert [n for n in _wait_gone(2.0) if n.startswith("abort-watch-")] == []
        # the master, at the first barrier, learns at once why h2 is not coming
        with SyncData("127.0.0.1", "h1", ["h1", "h2"], "leak:main", port=port,
                      secret=SECRET) as master:
            with pytest.raises(SyncAborted, match="disk full"):
                master.barrier("disks-created", timeout=5)
        assert master_server.state.value == "running"
