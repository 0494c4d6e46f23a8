"""The sync client: `SyncData`, one persistent connection per host and session.

    with SyncData(master_addr, "host1", ["host1", "host2"], "mig-1",
                  port=port, secret=secret) as sync:
        ports = sync.sync({"port": 5200}, timeout=60)   # {"host1": ..., "host2": ...}
        sync.barrier("guest-ready", timeout=120)

The constructor does no I/O; the first call connects (retrying refused
connections until its deadline), authenticates and joins the session.  Leaving
the ``with`` block on an exception aborts the session for every peer.  Close
the object (or use ``with``): a connection lost before close aborts the session.
"""

from __future__ import annotations

import enum
import logging
import secrets
import socket
import threading
import time
from types import TracebackType
from typing import Any, Dict, NoReturn, Optional, Sequence, Tuple, Type, Union

from multihost_migration.errors import (ConfigError, SyncAborted, SyncBarrierTimeout,
                                        SyncConnectTimeout, SyncError, SyncProtocolError,
                                        SyncTimeout)
from multihost_migration.sync import wire
from multihost_migration.verdicts import abort_kind
from multihost_migration.sync.server import DEFAULT_PORT
from multihost_migration.sync.wire import Message

log = logging.getLogger(__name__)

REPLY_GRACE = 5.0  # extra client-side wait beyond the server-enforced timeout
_RETRY_ERRORS = (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError)


class ClientState(enum.Enum):
    NEW = "new"
    JOINED = "joined"
    ABORTED = "aborted"
    CLOSED = "closed"


class SyncData:
    """Barriers and data exchange among the hosts of one session."""

    def __init__(self, masterid: str, hostid: str, hosts: Sequence[str],
                 session_id: Optional[str] = None, port: int = DEFAULT_PORT,
                 secret: Union[bytes, str, None] = None) -> None:
        self.masterid = masterid
        self.hostid = hostid
        self.hosts = [str(h) for h in hosts]
        if hostid not in self.hosts:
            raise ConfigError(f"host id {hostid!r} is not one of the session hosts {self.hosts}")
        self.session_id = session_id if session_id is not None else ",".join(self.hosts)
        self.port = port
        self.state = ClientState.NEW
        self._secret = wire.secret_or_env(secret)
        self._sock: Optional[socket.socket] = None
        self._decoder = wire.FrameDecoder(f"sync server {masterid}:{port}", wire.MAX_REPLY_FRAME)
        self._key = b""
        self._tx_seq = 0
        self._rx_seq = 0
        self._counter = 0
        self._aborted: Optional[SyncAborted] = None
        self._interrupt: Optional[SyncAborted] = None
        self._lock = threading.Lock()
        self.log = log.getChild(hostid)

    @property
    def server(self) -> str:
        return f"{self.masterid}:{self.port}"

    # -- public API ---------------------------------------------------------

    def sync(self, data: Any = None, timeout: float = 60,
             tag: Optional[str] = None) -> Dict[str, Any]:
        """Wait until every host reached this point; return {hostid: data}.

        Without `tag`, successive calls are numbered (#1, #2, ...), so all
        hosts must make the same sequence of untagged calls.
        """
        if not wire.depth_ok(data):
            raise SyncProtocolError("local", f"sync data nested deeper than "
                                             f"{wire.MAX_DATA_DEPTH} levels")
        with self._lock:
            numbered = tag is None
            if tag is None:
                tag = f"#{self._counter + 1}"
            deadline = time.monotonic() + timeout
            self._ensure_joined(deadline, tag, timeout)
            remaining = max(deadline - time.monotonic(), 0.001)
            self._send({"op": "sync", "tag": tag, "data": data, "timeout": remaining},
                       deadline, check_size=True)
            if numbered:  # only once sent: bad data must not skew the numbering
                self._counter += 1
            # The server answers at its deadline; wait a little longer for it.
            grace = min(REPLY_GRACE, 1.0 + 0.05 * timeout)
            while True:
                msg = self._recv(deadline + grace, tag, timeout)
                op = msg["op"]
                if op == "result" and msg.get("tag") == tag:
                    result = msg.get("data")
                    if not isinstance(result, dict):
                        raise SyncProtocolError(self.server, "result without data")
                    return result
                if op == "timeout" and msg.get("tag") == tag:
                    missing = [str(h) for h in msg.get("missing") or []]
                    self._aborted = SyncAborted(self.session_id, self.hostid,
                                                f"timed out at {tag!r} waiting for {missing}")
                    self.state = ClientState.ABORTED
                    raise SyncBarrierTimeout(self.session_id, tag, self.hostid,
                                             timeout, missing)
                self._unexpected(msg)

    def barrier(self, tag: str, timeout: float = 60) -> None:
        """Wait until every host of the session reached `tag`."""
        self.sync(None, timeout, tag=tag)

    def abort(self, reason: str, timeout: float = 5.0, kind: str = "failed") -> None:
        """Release every peer of the session at once with SyncAborted(reason);
        `kind` "interrupted" when this host stops on a signal."""
        with self._lock:
            if self.state is ClientState.ABORTED:
                return
            deadline = time.monotonic() + timeout
            try:
                self._ensure_joined(deadline, "abort", timeout)
            except SyncAborted:
                return
            self._send({"op": "abort", "reason": str(reason), "kind": kind}, deadline)
            while True:
                msg = self._recv(deadline, "abort", timeout)
                if msg["op"] == "aborted":
                    self._set_aborted(msg)
                    return
                if msg["op"] == "error":
                    self._unexpected(msg)

    def interrupt(self, err: SyncAborted) -> None:
        """From another thread: end whatever this client waits for (a sync,
        a connect) at once with `err`, e.g. a peer failure the controller
        relayed while the sync server itself cannot be reached."""
        self._interrupt = err
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Leave the session cleanly (best effort) and close the connection."""
        with self._lock:
            sock, self._sock = self._sock, None
            if sock is None:
                self.state = ClientState.CLOSED
                return
            try:
                if self.state is ClientState.JOINED:
                    self._sock = sock
                    deadline = time.monotonic() + 2.0
                    self._send({"op": "bye"}, deadline)
                    while self._recv(deadline, "bye", 2.0)["op"] != "bye":
                        pass
            except SyncError as err:
                self.log.debug("sync close: %s", err)
            finally:
                self._sock = None
                self.state = ClientState.CLOSED
                sock.close()

    def __enter__(self) -> "SyncData":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        try:
            if exc is not None and self.state is ClientState.JOINED:
                try:
                    self.abort(f"{type(exc).__name__}: {exc}", timeout=2.0,
                               kind=abort_kind(exc))
                except SyncError as err:
                    self.log.warning("could not abort session %r: %s", self.session_id, err)
        finally:
            self.close()

    # -- connection ---------------------------------------------------------

    def _ensure_joined(self, deadline: float, tag: str, timeout: float) -> None:
        """Connect, authenticate and join; `tag`/`timeout` name the caller's wait."""
        if self._aborted is not None:
            raise self._aborted
        if self._interrupt is not None:
            raise self._interrupt
        if self.state is ClientState.CLOSED:
            raise SyncError(f"sync client of {self.hostid} for session "
                            f"{self.session_id!r} is closed")
        if self.state is ClientState.JOINED:
            return
        try:
            self._connect(deadline)
            self._handshake(deadline, tag, timeout)
            self._send({"op": "join", "session": self.session_id, "host": self.hostid,
                        "hosts": self.hosts}, deadline)
            msg = self._recv(deadline, tag, timeout)
            if msg["op"] != "joined":
                self._unexpected(msg)
        except SyncAborted:
            raise
        except BaseException:
            self._reset_connection()  # a later call starts over with a new connection
            raise
        self.state = ClientState.JOINED
        self.log.debug("joined session %r at %s", self.session_id, self.server)

    def _connect(self, deadline: float) -> None:
        total = max(deadline - time.monotonic(), 0.0)
        delay, last = 0.02, "no attempt"
        while True:
            remaining = deadline - time.monotonic()
            if self._interrupt is not None:
                raise self._interrupt
            if remaining <= 0:
                raise SyncConnectTimeout(self.masterid, self.port, total, last)
            try:   # attempts of at most 1 s, so that an interrupt is seen
                sock = socket.create_connection((self.masterid, self.port),
                                                timeout=min(remaining, 1.0))
                break
            except _RETRY_ERRORS as err:
                last = str(err)
            except socket.timeout as err:
                last = f"connect timed out: {err}"
            except OSError as err:
                raise SyncError(f"cannot connect to sync server {self.server}: {err}") from err
            time.sleep(max(min(delay, deadline - time.monotonic()), 0))
            delay = min(delay * 2, 0.5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def _handshake(self, deadline: float, tag: str, timeout: float) -> None:
        nonce = secrets.token_bytes(wire.NONCE_SIZE)
        body = wire.encode_body({"op": "hello", "v": wire.PROTOCOL_VERSION, "nonce": nonce.hex(),
                                 "host": self.hostid})
        self._write(wire.pack(wire.hello_mac(self._secret, body), body), deadline)
        try:
            mac, body = self._read_frame(deadline, tag, timeout)
        except SyncTimeout:
            raise
        except SyncError as err:
            raise SyncProtocolError(self.server, f"handshake failed ({err}): wrong secret, "
                                                 f"or not a sync server?") from err
        if not wire.mac_ok(wire.welcome_mac(self._secret, nonce, body), mac):
            raise SyncProtocolError(self.server, "welcome has a bad MAC (wrong secret?)")
        msg = wire.decode_body(body, self.server)
        server_nonce = wire.nonce_from(msg, self.server)
        self._key = wire.conn_key(self._secret, nonce, server_nonce)

    # -- frames -------------------------------------------------------------

    def _send(self, msg: Message, deadline: float, check_size: bool = False) -> None:
        body = wire.encode_body(msg)
        if check_size and len(body) + wire.MAC_SIZE > wire.DEFAULT_MAX_FRAME:
            raise SyncProtocolError("local", f"sync data too large: {len(body)} bytes encoded, "
                                             f"the limit is {wire.DEFAULT_MAX_FRAME}")
        mac = wire.frame_mac(self._key, wire.C2S, self._tx_seq, body)
        self._tx_seq += 1
        self._write(wire.pack(mac, body), deadline)

    def _write(self, data: bytes, deadline: float) -> None:
        if self._sock is None:
            raise SyncError(f"not connected to sync server {self.server}")
        try:
            self._sock.settimeout(max(deadline - time.monotonic(), 0.001))
            self._sock.sendall(data)
        except OSError as err:
            self._lost(f"send failed: {err}")

    def _recv(self, deadline: float, tag: str, timeout: float) -> Message:
        mac, body = self._read_frame(deadline, tag, timeout)
        expected = wire.frame_mac(self._key, wire.S2C, self._rx_seq, body)
        if not wire.mac_ok(expected, mac):
            self._lost(f"reply #{self._rx_seq} has a bad MAC")
        self._rx_seq += 1
        msg = wire.decode_body(body, self.server)
        if msg["op"] == "aborted":
            self._set_aborted(msg)
            if tag not in ("abort", "bye"):
                assert self._aborted is not None
                raise self._aborted
        return msg

    def _read_frame(self, deadline: float, tag: str, timeout: float) -> Tuple[bytes, bytes]:
        while True:
            frame = self._decoder.next_frame()
            if frame is not None:
                return frame
            remaining = deadline - time.monotonic()
            if self._sock is None:
                raise SyncError(f"not connected to sync server {self.server}")
            if remaining <= 0:
                # The request is still outstanding: this connection is unusable.
                self._drop_socket()
                raise SyncBarrierTimeout(self.session_id, tag, self.hostid, timeout, None)
            try:
                self._sock.settimeout(remaining)
                chunk = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as err:
                self._lost(f"recv failed: {err}")
            if not chunk:
                self._lost("connection closed by the sync server")
            self._decoder.feed(chunk)

    def _set_aborted(self, msg: Message) -> None:
        self._aborted = SyncAborted(str(msg.get("session", self.session_id)),
                                    str(msg.get("host")), str(msg.get("reason")),
                                    str(msg.get("kind", "failed")))
        self.state = ClientState.ABORTED

    def _unexpected(self, msg: Message) -> NoReturn:
        if msg["op"] == "error":
            raise SyncProtocolError(self.server, str(msg.get("reason")))
        raise SyncProtocolError(self.server, f"unexpected message {msg['op']!r}")

    def _reset_connection(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._decoder = wire.FrameDecoder(f"sync server {self.server}", wire.MAX_REPLY_FRAME)
        self._key, self._tx_seq, self._rx_seq = b"", 0, 0
        if self.state is ClientState.CLOSED:  # set by _lost(); not closed by the user
            self.state = ClientState.NEW

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self.state is not ClientState.ABORTED:
            self.state = ClientState.CLOSED

    def _lost(self, why: str) -> NoReturn:
        self._drop_socket()
        if self._interrupt is not None:
            raise self._interrupt
        raise SyncError(f"lost connection to sync server {self.server} "
                        f"(session {self.session_id!r}, host {self.hostid}): {why}")



