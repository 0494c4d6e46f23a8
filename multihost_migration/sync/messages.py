"""Client requests, parsed once at the server's edge into typed objects.

A request that parses is well-formed; what it means for a session is decided
by `session.SessionTable`.  Bad fields raise SyncProtocolError naming them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple, Union

from multihost_migration.errors import SyncProtocolError
from multihost_migration.sync import wire
from multihost_migration.sync.wire import Message

MAX_NAME = 256  # session, host and tag names
MAX_REASON = 4096
MAX_HOSTS = 1024
MAX_TIMEOUT = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Join:
    session: str
    host: str
    hosts: Tuple[str, ...]


@dataclass(frozen=True)
class Sync:
    tag: str
    data: Any
    timeout: float


@dataclass(frozen=True)
class Abort:
    reason: str
    kind: str = "failed"   # or "interrupted"; "lost" is the server's own


@dataclass(frozen=True)
class Bye:
    pass


Request = Union[Join, Sync, Abort, Bye]


def _name(msg: Message, field: str, peer: str) -> str:
    value = msg.get(field)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
        raise SyncProtocolError(peer, f"{msg['op']!r} needs {field!r}: a string of "
                                      f"1..{MAX_NAME} characters")
    return value


def parse_request(msg: Message, peer: str) -> Request:
    """The typed request of one authenticated message."""
    op = msg["op"]
    if op == "join":
        hosts = msg.get("hosts")
        if (not isinstance(hosts, list) or not 0 < len(hosts) <= MAX_HOSTS
                or not all(isinstance(h, str) and 0 < len(h) <= MAX_NAME for h in hosts)):
            raise SyncProtocolError(peer, "'hosts' must be a list of host id strings")
        return Join(_name(msg, "session", peer), _name(msg, "host", peer), tuple(hosts))
    if op == "sync":
        timeout = msg.get("timeout")
        if (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                or not 0 < timeout <= MAX_TIMEOUT):
            raise SyncProtocolError(peer, f"'timeout' must be a number in (0, {MAX_TIMEOUT:g}]")
        data = msg.get("data")
        if not wire.depth_ok(data):
            raise SyncProtocolError(peer, f"'data' nested deeper than {wire.MAX_DATA_DEPTH}")
        return Sync(_name(msg, "tag", peer), data, float(timeout))
    if op == "abort":
        reason = msg.get("reason")
        if not isinstance(reason, str):
            raise SyncProtocolError(peer, "'abort' needs a string 'reason'")
        kind = msg.get("kind", "failed")
        if kind not in ("failed", "interrupted"):
            raise SyncProtocolError(peer, "'abort' kind must be 'failed' or 'interrupted'")
        return Abort(reason[:MAX_REASON], kind)
    if op == "bye":
        return Bye()
    raise SyncProtocolError(peer, f"unknown op {op[:MAX_NAME]!r}")
