"""Wire format of the sync protocol: secrets, frames, MACs and strict JSON.

Every frame is::

    +----------------+-----------------------+---------------------------+
    | length L (>I)  | HMAC-SHA256 (32 bytes) | body: L-32 bytes of JSON |
    +----------------+-----------------------+---------------------------+

The body is one UTF-8 JSON object.  L is checked against a maximum before a
single body byte is buffered, and the MAC is checked before the body is parsed,
so unauthenticated bytes never reach the JSON decoder.

Keys and MAC inputs (all with the label ``mhm-sync-v1``):

* ``hello`` (client -> server): HMAC(secret, "hello" | body); the body carries
  a fresh client nonce.
* ``welcome`` (server -> client): HMAC(secret, "welcome" | client nonce | body);
  the body carries a fresh server nonce.  The client so knows the server holds
  the job secret too.
* Every later frame: HMAC(K, direction | seq | body) with the connection key
  K = HMAC(secret, "conn" | client nonce | server nonce), direction ``c2s`` or
  ``s2c`` and seq a per-direction counter from 0.  A frame captured in another
  job (other secret), another connection or session (other nonces), or earlier
  in the same connection (other seq) fails its MAC.

The hello MAC covers only the client nonce, so a captured hello passes again
when replayed; the server's fresh nonce is the challenge.  The server counts a
connection as authenticated only once the client's first frame (its ``join``)
verifies under K, which covers both nonces: a replayer without the secret
cannot produce it, and its connection is closed at the handshake deadline.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import string
import struct
from typing import Any, Dict, Optional, Tuple, Union

from multihost_migration.errors import ConfigError, SyncProtocolError

PROTOCOL_VERSION = 1
MAC_SIZE = 32
NONCE_SIZE = 16
HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 1 << 20  # client -> server
MAX_REPLY_FRAME = 16 << 20  # server -> client (results of many hosts)
MIN_SECRET_BYTES = 16
SECRET_ENV = "MHM_SYNC_SECRET"
MAX_DATA_DEPTH = 100  # nesting of sync data; deeper would strain JSON decoders
C2S = b"c2s"
S2C = b"s2c"
_LABEL = b"mhm-sync-v1 "

Message = Dict[str, Any]


def new_secret() -> str:
    """A fresh per-job secret, hex encoded (256 bits)."""
    return secrets.token_hex(32)


def coerce_secret(secret: Union[bytes, bytearray, str]) -> bytes:
    """The secret as bytes: bytes as is, str as hex if it is hex, else UTF-8."""
    if isinstance(secret, (bytes, bytearray)):
        raw = bytes(secret)
    elif isinstance(secret, str):
        text = secret.strip()
        if text and len(text) % 2 == 0 and all(c in string.hexdigits for c in text):
            raw = bytes.fromhex(text)
        else:
            raw = text.encode("utf-8")
    else:
        raise ConfigError(f"sync secret must be bytes or str, not {type(secret).__name__}")
    if len(raw) < MIN_SECRET_BYTES:
        raise ConfigError(f"sync secret too short: {len(raw)} bytes, "
                          f"need at least {MIN_SECRET_BYTES}")
    return raw


def secret_or_env(secret: Union[bytes, bytearray, str, None]) -> bytes:
    """coerce_secret(secret), or of $MHM_SYNC_SECRET when secret is None."""
    if secret is None:
        secret = os.environ.get(SECRET_ENV)
        if secret is None:
            raise ConfigError(f"no sync secret given and ${SECRET_ENV} is not set")
    return coerce_secret(secret)


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.digest(key, _LABEL + b"".join(parts), "sha256")


def hello_mac(secret: bytes, body: bytes) -> bytes:
    return _mac(secret, b"hello|", body)


def welcome_mac(secret: bytes, client_nonce: bytes, body: bytes) -> bytes:
    return _mac(secret, b"welcome|", client_nonce, body)


def conn_key(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return _mac(secret, b"conn|", client_nonce, server_nonce)


def frame_mac(key: bytes, direction: bytes, seq: int, body: bytes) -> bytes:
    return _mac(key, direction, b"|", seq.to_bytes(8, "big"), body)


def mac_ok(expected: bytes, got: bytes) -> bool:
    return hmac.compare_digest(expected, got)


def pack(mac: bytes, body: bytes) -> bytes:
    """One frame on the wire."""
    return HEADER.pack(MAC_SIZE + len(body)) + mac + body


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def encode_body(message: Message) -> bytes:
    """Canonical JSON of one message; raises SyncProtocolError if not JSON-able."""
    try:
        return _ENCODER.encode(message).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as err:
        raise SyncProtocolError("local", f"message is not JSON-serialisable: {err}") from err


def decode_body(body: bytes, peer: str) -> Message:
    """Parse one authenticated body: a JSON object with a string "op"."""
    try:
        value = _DECODER.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise SyncProtocolError(peer, f"bad JSON body: {err}") from err
    if not isinstance(value, dict) or not isinstance(value.get("op"), str):
        raise SyncProtocolError(peer, "body is not a JSON object with a string 'op'")
    return value


def depth_ok(value: Any, limit: int = MAX_DATA_DEPTH) -> bool:
    """True if lists/dicts in `value` nest at most `limit` levels deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True


def nonce_from(message: Message, peer: str) -> bytes:
    """The hex nonce carried by a hello/welcome message."""
    raw = message.get("nonce")
    try:
        nonce = bytes.fromhex(raw) if isinstance(raw, str) else b""
    except ValueError:
        nonce = b""
    if len(nonce) != NONCE_SIZE:
        raise SyncProtocolError(peer, "missing or malformed nonce")
    return nonce


class FrameDecoder:
    """Incremental frame splitter with a size bound checked on the header."""

    def __init__(self, peer: str, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.peer = peer
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data
        self._check_header()

    def _check_header(self) -> Optional[int]:
        if len(self._buf) < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(self._buf)
        if length > self.max_frame:
            raise SyncProtocolError(self.peer, f"frame of {length} bytes exceeds "
                                               f"the maximum of {self.max_frame}")
        if length < MAC_SIZE + 2:
            raise SyncProtocolError(self.peer, f"frame of {length} bytes is too short")
        return int(length)

    def next_frame(self) -> Optional[Tuple[bytes, bytes]]:
        """(mac, body) of the next complete frame, or None if incomplete."""
        length = self._check_header()
        if length is None or len(self._buf) < HEADER.size + length:
            return None
        start = HEADER.size
        mac = bytes(self._buf[start:start + MAC_SIZE])
        body = bytes(self._buf[start + MAC_SIZE:start + length])
        del self._buf[:start + length]
        return mac, body
