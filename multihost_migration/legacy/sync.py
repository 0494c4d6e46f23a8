"""autotest.client.shared.syncdata / barrier, served by the suite's sync
server (authenticated JSON frames, results keyed by host id).

Legacy SyncData(masterid, hostid, hosts, session_id, listen_server) keeps
its signature; the server address, port and secret are the job's (the 5th
argument, the legacy listen server, is not needed and ignored).  Data must
be JSON (tuples arrive as lists, dict keys as strings): what legacy tests
exchange (ports, address caches, flags, time pairs) is.  A legacy session
is released at once when a peer fails (MultihostMigration._peer_aborted).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import socket
import threading
from typing import Any, Sequence

from multihost_migration.legacy import context
from multihost_migration.sync import SyncData as _SyncData

log = logging.getLogger(__name__)

_names: dict[str, "itertools.count[int]"] = {}
_names_lock = threading.Lock()


def _session_name(job_id: str, session_id: Any) -> str:
    """The same name on every host for the same legacy id (str of a dict
    built in the same order), numbered when a host opens it again."""
    text = str(session_id)
    with _names_lock:
        n = next(_names.setdefault(text, itertools.count(1)))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{job_id}:legacy:{digest}:{n}"


class SyncData:
    """Legacy SyncData: sync(data, timeout) -> {hostid: data} among `hosts`."""

    def __init__(self, masterid: str, hostid: str, hosts: Sequence[str],
                 session_id: Any = None, listen_server: Any = None, port: Any = None,
                 tmpdir: Any = None) -> None:
        ctx = context.current("SyncData")
        params = ctx.params
        self.masterid = str(masterid)
        self.hostid = str(hostid)
        self.hosts = [str(h) for h in hosts]
        self.session_id = session_id if session_id is not None else ",".join(self.hosts)
        name = _session_name(str(params.get("job_id", "mhm")), self.session_id)
        address = str(params.get(f"address_{self.masterid}", self.masterid))
        self._ctx = ctx
        self._sync = _SyncData(address, self.hostid, self.hosts, session_id=name,
                               port=int(params.get("sync_port") or params.get("comm_port")
                                        or 13234),
                               secret=str(params.get("sync_secret", "")))
        ctx.opened(self._sync)

    def sync(self, data: Any = None, timeout: float = 60, session_id: Any = None) -> Any:
        """Wait for every host; {hostid: its data}."""
        self._ctx.raise_pending()
        return self._sync.sync(data, timeout=float(timeout))

    def single_sync(self, data: Any = None, timeout: float = 60) -> Any:
        try:
            return self.sync(data, timeout)
        finally:
            self.close()

    def close(self) -> None:
        self._ctx.closed(self._sync)
        self._sync.close()

    def __del__(self) -> None:  # legacy code never closes them; best effort
        try:
            self._ctx.closed(self._sync)
        except Exception:
            pass


def hosts_barrier(masterid: str, hostid: str, hosts: Sequence[str], session_id: Any,
                  tag: str, timeout: float) -> None:
    """MultihostMigration._hosts_barrier: every host of `hosts` meets at `tag`."""
    sync = SyncData(masterid, hostid, hosts, f"{session_id},{tag},barrier")
    try:
        log.debug("barrier %s (%s s)", tag, timeout)
        sync.sync(tag, timeout)
    finally:
        sync.close()


class _MeasuredConnection:
    """An accepted connection of listen_server: recv() waits at most a
    second and then returns b"" (the legacy measuring loops count bytes
    until their own deadline; a silent peer must not block them)."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        conn.settimeout(1.0)

    def recv(self, size: int) -> bytes:
        try:
            return self._conn.recv(size)
        except socket.timeout:
            return b""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _ListeningSocket:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def accept(self) -> tuple[_MeasuredConnection, Any]:
        conn, peer = self._sock.accept()
        return _MeasuredConnection(conn), peer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class listen_server:  # noqa: N801 - legacy name
    """autotest barrier.listen_server: a listening TCP socket (`.socket`)."""

    def __init__(self, address: str = "", port: int = 11922, listen: int = 5) -> None:
        self.address = address
        self.port = port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(listen)
        self.socket = _ListeningSocket(sock)
        self._sock = sock

    def close(self) -> None:
        self._sock.close()


def release_all(err: Any) -> None:
    """A peer failed: every legacy session this host waits in ends now."""
    try:
        sessions = context.current().sessions()
    except Exception:
        return
    for session in sessions:
        session.interrupt(err)


__all__ = ["SyncData", "hosts_barrier", "listen_server", "release_all"]
