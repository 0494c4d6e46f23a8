"""Peer reports relayed by the controller: the path of last resort.

Hosts normally learn of a peer's failure from the sync server (AbortWatch).
When the hosts cannot reach each other (a partition) or a host hangs, that
path is gone, but the controller still reaches every host over SSH.  When
one host's job ends in failure, or a host stops answering, the controller
writes one line to the other hosts' client jobs, on their standard input
(the SSH channel):

    MHM-RELAY<TAB>failed<TAB><host><TAB><verdict><TAB><reason>
    MHM-RELAY<TAB>unresponsive<TAB><host><TAB>ERROR<TAB><reason>

The client job's reader thread decodes each line and `deliver()`s it to the
listeners the running scenario registered (MultihostMigration), which stop
the local work as a sync abort would.  Only the controller writes there: the
channel is its authenticated SSH session.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger(__name__)

PREFIX = "MHM-RELAY\t"
KINDS = ("failed", "unresponsive")
MAX_REASON = 1500          # a pty's line discipline takes lines up to 4095 bytes


@dataclass(frozen=True)
class PeerReport:
    """What the controller saw of another host."""

    kind: str        # "failed" | "unresponsive"
    host: str
    verdict: str
    reason: str

    def encode(self) -> str:
        """One line (no newline), safe for a terminal in canonical mode."""
        reason = " ".join(self.reason.split())[:MAX_REASON]
        return PREFIX + "\t".join((self.kind, self.host, self.verdict, reason))

    def describe(self) -> str:
        """The reason a host stopped, in the words of its verdict."""
        what = "became unresponsive" if self.kind == "unresponsive" else "failed"
        return f"stopped because {self.host} {what}: {self.reason}"


def decode(line: str) -> Optional[PeerReport]:
    """The report a relay line carries; None for any other line."""
    if not line.startswith(PREFIX):
        return None
    fields = line[len(PREFIX):].rstrip("\r\n").split("\t", 3)
    if len(fields) != 4 or fields[0] not in KINDS or not fields[1]:
        return None
    return PeerReport(*fields)


Listener = Callable[[PeerReport], None]
_listeners: list[Listener] = []
_lock = threading.Lock()
_received: list[PeerReport] = []


def listen(listener: Listener) -> Callable[[], None]:
    """Call `listener` for every report (also those already received);
    returns the function that unregisters it."""
    with _lock:
        _listeners.append(listener)
        earlier = list(_received)
    for report in earlier:
        listener(report)

    def stop() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)
    return stop


def deliver(report: PeerReport) -> None:
    """Hand `report` to every listener; a failing listener is logged."""
    log.warning("controller reports: %s", report.describe())
    with _lock:
        _received.append(report)
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(report)
        except Exception:  # one listener's bug must not hide the report from others
            log.exception("relay listener failed")


def reset() -> None:
    """Forget listeners and reports (tests)."""
    with _lock:
        _listeners.clear()
        _received.clear()
