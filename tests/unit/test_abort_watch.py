"""AbortWatch against a real sync server: a peer's failure reaches a busy
host at once; a good end releases everyone quietly."""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import pytest

from multihost_migration.abort_watch import AbortWatch
from multihost_migration.errors import SyncAborted
from multihost_migration.sync import SyncServer

SECRET = "s" * 32
HOSTS = ["h1", "h2"]


@pytest.fixture
def server() -> Iterator[SyncServer]:
    with SyncServer("127.0.0.1", 0, SECRET) as srv:
        yield srv


class Recorder:
    def __init__(self) -> None:
        self.errors: list[SyncAborted] = []
        self.event = threading.Event()

    def __call__(self, err: SyncAborted) -> None:
        self.errors.append(err)
        self.event.set()


def watches(port: int, session: str = "job:watch") -> tuple[dict[str, AbortWatch],
                                                             dict[str, Recorder]]:
    recorders = {h: Recorder() for h in HOSTS}
    found = {h: AbortWatch("127.0.0.1", h, HOSTS, session, port, SECRET, lifetime=60,
                           on_abort=recorders[h]) for h in HOSTS}
    for watch in found.values():
        watch.start()
    return found, recorders


def all_waiting(server: SyncServer, session: str = "job:watch", timeout: float = 5.0) -> None:
    """Until every watcher has joined its session on the server (deadline)."""
    deadline = time.monotonic() + timeout
    while server.session_members(session)["members"] != HOSTS:
        assert time.monotonic() < deadline, server.session_members(session)
        time.sleep(0.01)


def test_a_peer_abort_reaches_the_busy_host_at_once(server: SyncServer) -> None:
    found, rec = watches(server.port)
    all_waiting(server)
    t0 = time.monotonic()
    found["h2"].abort("TestFail on h2: disk pattern differs at block 7")
    assert rec["h1"].event.wait(5), "h1's watcher never fired"
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, elapsed
    assert found["h1"].fired is not None and found["h1"].fired.host == "h2"
    assert "disk pattern differs at block 7" in found["h1"].fired.reason
    assert rec["h2"].errors == [] and found["h2"].fired is None  # its own abort
    for watch in found.values():
        watch.stop()


def test_the_good_end_releases_every_watcher_quietly(server: SyncServer) -> None:
    found, rec = watches(server.port)
    all_waiting(server)
    found["h1"].end()      # master, after the last barrier
    found["h2"].stop()
    assert not found["h1"]._thread.is_alive() and not found["h2"]._thread.is_alive()
    assert rec["h1"].errors == [] and rec["h2"].errors == []


def test_the_master_gone_fires_the_peer(server: SyncServer) -> None:
    found, rec = watches(server.port)
    all_waiting(server)
    server.stop()
    assert rec["h2"].event.wait(5), "h2's watcher never fired"
    assert "sync server on the master host is gone" in rec["h2"].errors[0].reason
    for watch in found.values():
        watch.stop()


def test_a_peer_that_dies_fires_the_others(server: SyncServer) -> None:
    found, rec = watches(server.port)
    all_waiting(server)
    sock = found["h2"]._session._sock   # h2's process dies: its connection drops
    assert sock is not None
    sock.shutdown(socket.SHUT_RDWR)
    assert rec["h1"].event.wait(5), "h1's watcher never fired"
    assert "lost contact with" in rec["h1"].errors[0].reason
    for watch in found.values():
        watch.stop()
