"""Session bookkeeping of the sync server, free of sockets and threads.

A session is named by a string and has a fixed list of host ids (set by the
first host that joins).  Hosts meet at sync points named by tags; a point
completes when every host of the session has arrived, and every arrival is
answered with ``{hostid: data}``.  An abort, a timed-out arrival or a
connection lost before its ``bye`` ends the session for everyone at once; the
abort is remembered (a tombstone) so that hosts arriving late learn it too.

Every method returns an outbox: the messages the server must send, as
``(connection, message)`` pairs.  Connections are opaque hashable objects.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Generic, Hashable, List, Optional, Sequence, Set, Tuple, TypeVar

from multihost_migration.sync.wire import Message

log = logging.getLogger(__name__)

C = TypeVar("C", bound=Hashable)
Outbox = List[Tuple[C, Message]]


@dataclass(frozen=True)
class AbortInfo:
    host: str
    reason: str
    when: float
    kind: str = "failed"   # errors.ABORT_KINDS

    def message(self, session: str) -> Message:
        return {"op": "aborted", "session": session, "host": self.host,
                "reason": self.reason, "kind": self.kind}


@dataclass
class Arrival(Generic[C]):
    conn: C
    data: Any
    deadline: float
    timeout: float


@dataclass
class Session(Generic[C]):
    name: str
    hosts: Tuple[str, ...]
    conns: Dict[C, str] = field(default_factory=dict)  # conn -> host id
    points: Dict[str, Dict[str, Arrival[C]]] = field(default_factory=dict)


def _error(reason: str) -> Message:
    return {"op": "error", "reason": reason}


class SessionTable(Generic[C]):
    """All sessions of one server."""

    def __init__(self, tombstone_ttl: float = 3600.0, max_tombstones: int = 10000) -> None:
        self.tombstone_ttl = tombstone_ttl
        self.max_tombstones = max_tombstones
        self.sessions: Dict[str, Session[C]] = {}
        self.aborted: "OrderedDict[str, AbortInfo]" = OrderedDict()
        self._deadlines: List[Tuple[float, int, str, str, str]] = []
        self._counter = itertools.count()

    # -- membership ---------------------------------------------------------

    def join(self, conn: C, name: str, host: str, hosts: Sequence[str],
             now: float) -> Outbox[C]:
        tomb = self._tombstone(name, now)
        if tomb is not None:
            return [(conn, tomb.message(name))]
        if host not in hosts or len(set(hosts)) != len(hosts) or not hosts:
            return [(conn, _error(f"host {host!r} not in session hosts {list(hosts)} "
                                  f"(or duplicate/empty host list)"))]
        session = self.sessions.get(name)
        if session is None:
            session = self.sessions[name] = Session(name, tuple(hosts))
            log.debug("session %r created by %s: hosts %s", name, host, list(hosts))
        elif session.hosts != tuple(hosts):
            return [(conn, _error(f"session {name!r} has hosts {list(session.hosts)}, "
                                  f"{host} claims {list(hosts)}"))]
        session.conns[conn] = host
        return [(conn, {"op": "joined", "session": name, "hosts": list(session.hosts)})]

    def leave(self, conn: C, name: str, clean: bool, why: str, now: float) -> Outbox[C]:
        """A connection said bye (clean) or was lost (not clean)."""
        session = self.sessions.get(name)
        if session is None or conn not in session.conns:
            return []
        host = session.conns.pop(conn)
        for point in session.points.values():
            arrival = point.get(host)
            if arrival is not None and arrival.conn == conn:
                del point[host]
        session.points = {tag: p for tag, p in session.points.items() if p}
        if not clean and host not in session.conns.values():
            return self.abort(name, host, f"lost contact with {host}: its sync connection "
                                          f"ended before close ({why})", now, kind="lost")
        if not session.conns:
            del self.sessions[name]
            log.debug("session %r finished", name)
        return []

    # -- sync points --------------------------------------------------------

    def arrive(self, conn: C, name: str, tag: str, data: Any, timeout: float,
               now: float) -> Outbox[C]:
        tomb = self._tombstone(name, now)
        if tomb is not None:
            return [(conn, tomb.message(name))]
        session = self.sessions.get(name)
        if session is None or conn not in session.conns:
            return [(conn, _error(f"not joined to session {name!r}"))]
        host = session.conns[conn]
        point = session.points.setdefault(tag, {})
        if host in point:
            return [(conn, _error(f"{host} already waits at {tag!r} in session {name!r}"))]
        deadline = now + timeout
        point[host] = Arrival(conn, data, deadline, timeout)
        if len(point) < len(session.hosts):
            self._push_deadline(deadline, name, tag, host)
            return []
        del session.points[tag]
        result = {h: point[h].data for h in session.hosts}
        message = {"op": "result", "tag": tag, "data": result}
        return [(arrival.conn, message) for arrival in point.values()]

    def abort(self, name: str, host: str, reason: str, now: float,
              kind: str = "failed") -> Outbox[C]:
        """End a session for everyone; repeated aborts keep the first reason."""
        tomb = self._tombstone(name, now)
        if tomb is not None:
            return []
        info = AbortInfo(host, reason, now, kind)
        self.aborted[name] = info
        while len(self.aborted) > self.max_tombstones:
            self.aborted.popitem(last=False)
        session = self.sessions.pop(name, None)
        log.info("session %r aborted by %s: %s", name, host, reason)
        if session is None:
            return []
        return [(conn, info.message(name)) for conn in session.conns]

    def expire(self, now: float) -> Outbox[C]:
        """Time out every arrival whose deadline has passed."""
        out: Outbox[C] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, name, tag, host = heapq.heappop(self._deadlines)
            session = self.sessions.get(name)
            point = session.points.get(tag) if session else None
            arrival = point.get(host) if point else None
            if session is None or point is None or arrival is None or arrival.deadline > now:
                continue
            missing = [h for h in session.hosts if h not in point]
            out.append((arrival.conn, {"op": "timeout", "tag": tag, "missing": missing,
                                       "timeout": arrival.timeout}))
            reason = (f"timed out after {arrival.timeout:.1f} s at {tag!r} "
                      f"waiting for {', '.join(missing)}")
            out.extend((c, m) for c, m in self.abort(name, host, reason, now)
                       if c != arrival.conn)
        return out

    def _push_deadline(self, deadline: float, name: str, tag: str, host: str) -> None:
        heapq.heappush(self._deadlines, (deadline, next(self._counter), name, tag, host))
        if len(self._deadlines) > 4096 and len(self._deadlines) > 4 * self.waiting():
            # Completed points leave stale entries behind: rebuild from live ones.
            self._deadlines = [
                (a.deadline, next(self._counter), s.name, tag, h)
                for s in self.sessions.values()
                for tag, point in s.points.items() for h, a in point.items()]
            heapq.heapify(self._deadlines)

    def waiting(self) -> int:
        """Number of arrivals waiting at incomplete points."""
        return sum(len(p) for s in self.sessions.values() for p in s.points.values())

    def next_deadline(self) -> Optional[float]:
        return self._deadlines[0][0] if self._deadlines else None

    def _tombstone(self, name: str, now: float) -> Optional[AbortInfo]:
        while self.aborted:
            oldest = next(iter(self.aborted.values()))
            if now - oldest.when <= self.tombstone_ttl:
                break
            self.aborted.popitem(last=False)
        return self.aborted.get(name)

    def members(self, name: str) -> Set[str]:
        """Host ids with a live connection in a session (for tests/stats)."""
        session = self.sessions.get(name)
        return set(session.conns.values()) if session else set()
