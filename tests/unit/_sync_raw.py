"""A hand-driven sync protocol client for tests: records and replays frames."""

from __future__ import annotations

import socket
import time
from typing import List, Optional, Tuple

from multihost_migration.sync import wire
from multihost_migration.sync.wire import Message


class RawClient:
    """Speaks the wire protocol step by step; keeps every frame it sent."""

    def __init__(self, port: int, secret: bytes, timeout: float = 3.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.secret = secret
        self.key = b""
        self.tx_seq = 0
        self.rx_seq = 0
        self.sent: List[bytes] = []
        self.decoder = wire.FrameDecoder("test server", wire.MAX_REPLY_FRAME)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def raw(self, data: bytes) -> None:
        self.sent.append(data)
        self.sock.sendall(data)

    def hello(self) -> None:
        nonce = b"\x01" * wire.NONCE_SIZE
        body = wire.encode_body({"op": "hello", "v": wire.PROTOCOL_VERSION, "nonce": nonce.hex()})
        self.raw(wire.pack(wire.hello_mac(self.secret, body), body))
        mac, reply = self.read_frame()
        assert wire.mac_ok(wire.welcome_mac(self.secret, nonce, reply), mac)
        server_nonce = wire.nonce_from(wire.decode_body(reply, "server"), "server")
        self.key = wire.conn_key(self.secret, nonce, server_nonce)

    def send(self, msg: Message) -> None:
        body = wire.encode_body(msg)
        self.raw(wire.pack(wire.frame_mac(self.key, wire.C2S, self.tx_seq, body), body))
        self.tx_seq += 1

    def read_frame(self) -> Tuple[bytes, bytes]:
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.decoder.feed(chunk)

    def recv(self) -> Message:
        mac, body = self.read_frame()
        assert wire.mac_ok(wire.frame_mac(self.key, wire.S2C, self.rx_seq, body), mac)
        self.rx_seq += 1
        return wire.decode_body(body, "server")

    def join(self, session: str, host: str, hosts: List[str]) -> Message:
        self.hello()
        self.send({"op": "join", "session": session, "host": host, "hosts": hosts})
        return self.recv()


def closed_by_server(sock: socket.socket, timeout: float) -> Optional[bytes]:
    """Read until EOF; the bytes received, or None if still open at the deadline."""
    deadline = time.monotonic() + timeout
    got = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk
