"""The sync server: one selector loop in a background thread.

The loop never blocks on a peer: sockets are non-blocking, reads are bounded
by the frame size limit, an unauthenticated connection must finish its
handshake within `handshake_timeout`, any started frame must be complete within
`frame_timeout`, and replies queue in a bounded per-connection buffer.
A connection counts as authenticated only once its first frame under the
connection key verifies (a valid hello alone proves nothing: it may be a
replay).  Unauthenticated connections beyond `max_pending` evict the oldest
one, so a flood of idle or replayed connections cannot lock out real hosts.
"""

from __future__ import annotations

import enum
import logging
import secrets
import selectors
import socket
import threading
import time
from collections import Counter, OrderedDict
from typing import Any, Dict, Optional, Tuple, Union

from multihost_migration.errors import SyncError, SyncProtocolError
from multihost_migration.sync import wire
from multihost_migration.sync.messages import Abort, Join, Sync, parse_request
from multihost_migration.sync.session import Outbox, SessionTable
from multihost_migration.sync.wire import Message

log = logging.getLogger(__name__)

DEFAULT_PORT = 13234
_HOUSEKEEPING_INTERVAL = 0.05
MAX_HELLO_FRAME = 1024  # size limit before a peer has authenticated


class ServerState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class _Conn:
    """One client connection as seen by the server loop."""

    def __init__(self, sock: socket.socket, peer: str, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.decoder = wire.FrameDecoder(peer, MAX_HELLO_FRAME)
        self.wbuf = bytearray()
        self.events = selectors.EVENT_READ
        self.key: Optional[bytes] = None  # None until the hello is verified
        # Until the client's first frame under `key` verifies (None once it has):
        # a hello replayed by someone without the secret never gets past this.
        self.handshake_deadline: Optional[float] = deadline
        self.partial_since: Optional[float] = None
        self.rx_seq = 0
        self.tx_seq = 0
        self.session: Optional[str] = None
        self.host: Optional[str] = None
        self.closed = False


def _peer_name(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


class SyncServer:
    """Sync server for any number of sessions; a context manager.

    ``with SyncServer("0.0.0.0", 0, secret) as srv: ... srv.port``
    """

    def __init__(self, address: str = "0.0.0.0", port: int = DEFAULT_PORT,
                 secret: Union[bytes, str, None] = None, *,
                 max_frame: int = wire.DEFAULT_MAX_FRAME,
                 handshake_timeout: float = 5.0, frame_timeout: float = 10.0,
                 max_pending: int = 256, max_connections: int = 4096,
                 max_outbuf: int = 64 << 20, tombstone_ttl: float = 3600.0) -> None:
        self.address = address
        self._requested_port = port
        self._secret = wire.secret_or_env(secret)
        self.max_frame = max_frame
        self.handshake_timeout = handshake_timeout
        self.frame_timeout = frame_timeout
        self.max_pending = max_pending
        self.max_connections = max_connections
        self.max_outbuf = max_outbuf
        self.state = ServerState.NEW
        self.stats: "Counter[str]" = Counter()
        self._table: SessionTable[_Conn] = SessionTable(tombstone_ttl=tombstone_ttl)
        self._conns: Dict[int, _Conn] = {}
        self._pending: "OrderedDict[int, _Conn]" = OrderedDict()
        self._listener: Optional[socket.socket] = None
        self._bound_port: Optional[int] = None
        self._listen_paused_until: Optional[float] = None
        self._sel: Optional[selectors.BaseSelector] = None
        self._wake_r: Optional[socket.socket] = None
        self._wake_w: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    # -- lifecycle ----------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the requested one before start())."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    def __enter__(self) -> "SyncServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.state is not ServerState.NEW:
            raise SyncError(f"sync server already {self.state.value}")
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(
                self.address, self._requested_port, type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE)[0]
            listener = socket.socket(family, socket.SOCK_STREAM)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(sockaddr)
                listener.listen(1024)
                listener.setblocking(False)
            except OSError:
                listener.close()
                raise
        except OSError as err:
            raise SyncError(f"sync server cannot listen on "
                            f"{self.address}:{self._requested_port}: {err}") from err
        self._listener = listener
        self._bound_port = int(listener.getsockname()[1])
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(listener, selectors.EVENT_READ, "listen")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.state = ServerState.RUNNING
        self._thread = threading.Thread(target=self._run, name=f"sync-server-{self.port}",
                                        daemon=True)
        self._thread.start()
        log.info("sync server listening on %s:%d", self.address, self.port)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and close every socket; idempotent."""
        if self.state is not ServerState.RUNNING:
            self.state = ServerState.STOPPED
            return
        self._stopping.set()
        assert self._wake_w is not None and self._thread is not None
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join(timeout)
        self.state = ServerState.STOPPED
        if self._thread.is_alive():
            raise SyncError(f"sync server thread did not stop within {timeout:.1f} s")
        log.info("sync server on port %d stopped: %s", self.port, dict(self.stats))

    # -- loop ---------------------------------------------------------------

    def _run(self) -> None:
        assert self._sel is not None
        next_housekeeping = time.monotonic()
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                wait = next_housekeeping - now
                deadline = self._table.next_deadline()
                if deadline is not None:
                    wait = min(wait, deadline - now)
                try:
                    for key, mask in self._sel.select(max(wait, 0.0)):
                        self._dispatch(key.data, mask)
                    now = time.monotonic()
                    self._deliver(self._table.expire(now))
                    if now >= next_housekeeping:
                        self._housekeeping(now)
                        next_housekeeping = now + _HOUSEKEEPING_INTERVAL
                except Exception:  # a bug must not take the server down for all
                    self.stats["internal_errors"] += 1
                    log.exception("sync server: internal error, still serving")
        finally:
            self._close_all()

    def _dispatch(self, data: Any, mask: int) -> None:
        if not isinstance(data, _Conn):
            if data == "listen":
                self._accept()
            else:  # "wake": stop() was called
                assert self._wake_r is not None
                try:
                    self._wake_r.recv(64)
                except OSError:
                    pass
        else:
            conn = data
            try:
                if mask & selectors.EVENT_WRITE and not conn.closed:
                    self._flush(conn)
                if mask & selectors.EVENT_READ and not conn.closed:
                    self._read(conn)
            except Exception as err:  # one bad connection never stops the loop
                log.exception("sync server: error on %s", conn.peer)
                self._drop(conn, f"internal error: {err}")

    def _accept(self) -> None:
        assert self._listener is not None and self._sel is not None
        for _ in range(64):
            try:
                sock, addr = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as err:  # EMFILE and friends: back off, keep serving
                log.warning("sync server accept failed: %s; pausing accepts", err)
                self.stats["accept_errors"] += 1
                self._sel.unregister(self._listener)
                self._listen_paused_until = time.monotonic() + 0.1
                return
            self.stats["accepted"] += 1
            if len(self._conns) >= self.max_connections:
                self.stats["refused_full"] += 1
                sock.close()
                continue
            if len(self._pending) >= self.max_pending:
                _, oldest = self._pending.popitem(last=False)
                self.stats["evicted"] += 1
                self._drop(oldest, "evicted: too many unauthenticated connections")
            self._setup_socket(sock)
            now = time.monotonic()
            conn = _Conn(sock, _peer_name(addr), now + self.handshake_timeout)
            self._conns[sock.fileno()] = conn
            self._pending[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    @staticmethod
    def _setup_socket(sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)

    def _housekeeping(self, now: float) -> None:
        if self._listen_paused_until is not None and now >= self._listen_paused_until:
            assert self._sel is not None and self._listener is not None
            self._sel.register(self._listener, selectors.EVENT_READ, "listen")
            self._listen_paused_until = None
        for conn in list(self._conns.values()):
            if conn.handshake_deadline is not None and now > conn.handshake_deadline:
                self.stats["handshake_timeouts"] += 1
                why = "no hello" if conn.key is None else "connection key not proven"
                self._drop(conn, f"{why} within {self.handshake_timeout:.1f} s")
            elif conn.partial_since is not None and now - conn.partial_since > self.frame_timeout:
                self.stats["frame_timeouts"] += 1
                self._drop(conn, f"frame not completed within {self.frame_timeout:.1f} s")

    # -- reading ------------------------------------------------------------

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._drop(conn, f"recv failed: {err}")
            return
        if not data:
            self._drop(conn, "connection closed by peer")
            return
        try:
            conn.decoder.feed(data)
            while not conn.closed:
                frame = conn.decoder.next_frame()
                if frame is None:
                    break
                self._handle_frame(conn, *frame)
        except SyncProtocolError as err:
            self.stats["rejected"] += 1
            log.warning("sync server rejects %s: %s", conn.peer, err.reason)
            self._drop(conn, f"protocol error: {err.reason}")
            return
        if conn.decoder.buffered:
            if conn.partial_since is None:
                conn.partial_since = time.monotonic()
        else:
            conn.partial_since = None

    def _handle_frame(self, conn: _Conn, mac: bytes, body: bytes) -> None:
        if conn.key is None:
            self._handle_hello(conn, mac, body)
            return
        if not wire.mac_ok(wire.frame_mac(conn.key, wire.C2S, conn.rx_seq, body), mac):
            self.stats["rejected_mac"] += 1
            raise SyncProtocolError(conn.peer, f"frame #{conn.rx_seq} has a bad MAC "
                                               f"(forged or replayed)")
        conn.rx_seq += 1
        if conn.handshake_deadline is not None:  # the client proved the connection key
            conn.handshake_deadline = None
            self._pending.pop(conn.sock.fileno(), None)
        msg = wire.decode_body(body, conn.peer)
        try:
            self._handle_message(conn, msg)
        except SyncProtocolError as err:  # a buggy but authenticated client
            self._send(conn, {"op": "error", "reason": err.reason})

    def _handle_hello(self, conn: _Conn, mac: bytes, body: bytes) -> None:
        if not wire.mac_ok(wire.hello_mac(self._secret, body), mac):
            self.stats["rejected_mac"] += 1
            raise SyncProtocolError(conn.peer, "hello has a bad MAC (wrong secret?)")
        msg = wire.decode_body(body, conn.peer)
        if msg["op"] != "hello" or msg.get("v") != wire.PROTOCOL_VERSION:
            raise SyncProtocolError(conn.peer, f"expected hello v{wire.PROTOCOL_VERSION}")
        client_nonce = wire.nonce_from(msg, conn.peer)
        server_nonce = secrets.token_bytes(wire.NONCE_SIZE)
        conn.key = wire.conn_key(self._secret, client_nonce, server_nonce)
        # Still pending: the hello may be a replay; only a frame under conn.key
        # (which needs the secret and this server nonce) authenticates.
        conn.decoder.max_frame = self.max_frame
        reply = wire.encode_body({"op": "welcome", "v": wire.PROTOCOL_VERSION,
                                  "nonce": server_nonce.hex()})
        self._queue(conn, wire.pack(wire.welcome_mac(self._secret, client_nonce, reply), reply))

    def _handle_message(self, conn: _Conn, msg: Message) -> None:
        request, now = parse_request(msg, conn.peer), time.monotonic()
        if isinstance(request, Join):
            if conn.session is not None:
                raise SyncProtocolError(conn.peer, f"already joined session {conn.session!r}")
            out = self._table.join(conn, request.session, request.host, request.hosts, now)
            if out and out[0][1]["op"] == "joined":
                conn.session, conn.host = request.session, request.host
            self._deliver(out)
            return
        if conn.session is None or conn.host is None:
            raise SyncProtocolError(conn.peer, f"{msg['op']!r} before join")
        if isinstance(request, Sync):
            self.stats["syncs"] += 1
            self._deliver(self._table.arrive(conn, conn.session, request.tag, request.data,
                                             request.timeout, now))
        elif isinstance(request, Abort):
            out = self._table.abort(conn.session, conn.host, request.reason, now,
                                    request.kind)
            info = self._table.aborted.get(conn.session)
            if info is not None and all(c is not conn for c, _ in out):
                out.append((conn, info.message(conn.session)))  # the aborter's ack
            self._deliver(out)
        else:  # Bye
            self._deliver(self._table.leave(conn, conn.session, True, "bye", now))
            conn.session = None
            self._send(conn, {"op": "bye"})

    # -- writing ------------------------------------------------------------

    def _deliver(self, outbox: Outbox[_Conn]) -> None:
        encoded: Dict[int, bytes] = {}  # a result goes to every host: encode it once
        for conn, msg in outbox:
            if not conn.closed:
                body = encoded.get(id(msg))
                if body is None:
                    try:
                        body = wire.encode_body(msg)
                    except SyncProtocolError as err:  # e.g. data nested too deep
                        body = wire.encode_body({"op": "error", "reason": err.reason})
                    encoded[id(msg)] = body
                self._send(conn, msg, body)

    def _send(self, conn: _Conn, msg: Message, body: Optional[bytes] = None) -> None:
        assert conn.key is not None
        if body is None:
            body = wire.encode_body(msg)
        if len(body) + wire.MAC_SIZE > wire.MAX_REPLY_FRAME:
            body = wire.encode_body({"op": "error", "reason": f"reply of {len(body)} "
                                     f"bytes exceeds {wire.MAX_REPLY_FRAME}"})
        mac = wire.frame_mac(conn.key, wire.S2C, conn.tx_seq, body)
        conn.tx_seq += 1
        self._queue(conn, wire.pack(mac, body))

    def _queue(self, conn: _Conn, data: bytes) -> None:
        conn.wbuf += data
        if len(conn.wbuf) > self.max_outbuf:
            self._drop(conn, f"peer does not read: {len(conn.wbuf)} bytes queued")
            return
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        if conn.wbuf:
            try:
                sent = conn.sock.send(conn.wbuf)
                del conn.wbuf[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as err:
                self._drop(conn, f"send failed: {err}")
                return
            if conn.wbuf:
                self.stats["send_backlog"] += 1  # the peer reads slowly: queue, never wait
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.wbuf else 0)
        if events != conn.events:
            assert self._sel is not None
            self._sel.modify(conn.sock, events, conn)
            conn.events = events

    def _drop(self, conn: _Conn, why: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        fd = conn.sock.fileno()
        self._conns.pop(fd, None)
        self._pending.pop(fd, None)
        try:
            assert self._sel is not None
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if conn.session is not None and conn.session not in self._table.aborted:
            self.stats["lost_members"] += 1
            log.warning("sync server: %s (%s in session %r) dropped: %s",
                        conn.peer, conn.host, conn.session, why)
            self._deliver(self._table.leave(conn, conn.session, False, why, time.monotonic()))
        else:
            log.debug("sync server: %s dropped: %s", conn.peer, why)

    def _close_all(self) -> None:
        for conn in list(self._conns.values()):
            conn.closed = True
            conn.sock.close()
        self._conns.clear()
        self._pending.clear()
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if self._sel is not None:
            self._sel.close()

    # -- introspection ------------------------------------------------------

    def connection_count(self) -> Tuple[int, int]:
        """(all connections, unauthenticated ones); approximate from other threads."""
        return len(self._conns), len(self._pending)

    def session_members(self, session: str) -> Dict[str, Any]:
        """Live host ids of a session and its abort, if any (for tests)."""
        info = self._table.aborted.get(session)
        return {"members": sorted(self._table.members(session)),
                "aborted": None if info is None else (info.host, info.reason)}
