"""Security review (issue #15): a replayed sync hello cannot hold a connection.

A hello captured on the wire passes its MAC again (it covers only the client
nonce), but the replayer cannot compute the connection key, which also covers
the server's fresh nonce.  Such a connection must stay unauthenticated and be
closed at the handshake deadline, while real hosts still get in.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator, List

import pytest

from multihost_migration.sync import SyncData, SyncServer, coerce_secret, new_secret
from tests.unit._sync_raw import RawClient

SECRET = coerce_secret(new_secret())
HANDSHAKE_TIMEOUT = 0.5


@pytest.fixture
def server() -> Iterator[SyncServer]:
    with SyncServer("127.0.0.1", 0, SECRET, handshake_timeout=HANDSHAKE_TIMEOUT,
                    frame_timeout=0.5) as srv:
        yield srv


def _captured_hello(srv: SyncServer) -> bytes:
    """A real host's hello frame, as an eavesdropper records it."""
    with RawClient(srv.port, SECRET) as real:
        assert real.join("captured", "h", ["h"])["op"] == "joined"
        return real.sent[0]


def _wait_for(srv: SyncServer, connections: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while srv.connection_count()[0] > connections and time.monotonic() < deadline:
        time.sleep(0.02)
    return srv.connection_count()[0]


def test_replayed_hellos_do_not_keep_connections_open(server: SyncServer) -> None:
    hello = _captured_hello(server)
    _wait_for(server, 0, 2.0)
    replays: List[socket.socket] = []
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=2.0)
            sock.sendall(hello)
            replays.append(sock)
        # each replay gets its welcome (the hello MAC is valid) ...
        for sock in replays:
            assert sock.recv(4096)
        # ... but none of them counts as authenticated, and all are closed
        # once the handshake deadline has passed.
        time.sleep(HANDSHAKE_TIMEOUT)
        assert _wait_for(server, 0, 2.0) == 0
        assert server.stats["handshake_timeouts"] >= 20
        for sock in replays:
            sock.settimeout(2.0)
            assert sock.recv(4096) == b""  # closed by the server
        # real hosts still get in, and stay in past the handshake deadline
        with SyncData("127.0.0.1", "a", ["a", "b"], "after-replay", port=server.port,
                      secret=SECRET) as first, \
                SyncData("127.0.0.1", "b", ["a", "b"], "after-replay", port=server.port,
                         secret=SECRET) as second:
            got: List[object] = []
            thread = threading.Thread(target=lambda: got.append(first.sync(1, timeout=5)))
            thread.start()
            time.sleep(HANDSHAKE_TIMEOUT * 2)  # first is joined and waits, unharmed
            assert second.sync(2, timeout=5) == {"a": 1, "b": 2}
            thread.join(5)
            assert got == [{"a": 1, "b": 2}]
    finally:
        for sock in replays:
            sock.close()


def test_proven_connection_is_no_longer_pending(server: SyncServer) -> None:
    with RawClient(server.port, SECRET) as raw:
        raw.hello()
        assert server.connection_count() == (1, 1)  # welcome sent, key not yet proven
        raw.send({"op": "join", "session": "s", "host": "h", "hosts": ["h"]})
        assert raw.recv()["op"] == "joined"
        assert server.connection_count() == (1, 0)
        time.sleep(HANDSHAKE_TIMEOUT * 2)
        assert server.connection_count() == (1, 0)  # not timed out once proven
