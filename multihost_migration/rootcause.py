"""Root cause first: which host and process failed first, and how.

A host that stops because of a peer says so ("stopped because h1 failed:
..."); a host whose own QEMU died says that, with the signal, even when a
peer's abort reached it first; a migration that stalled says at how many
percent and for how long; an interruption stays an interruption (ABORT) on
every host, also on those that learnt it from a peer.
"""

from __future__ import annotations

import threading
import time
from typing import Iterable, Optional

from multihost_migration.errors import SyncAborted, VMDiedError
from multihost_migration.qemu.vm import VM

#: How long a migration must have made no progress to be called stalled in
#: a verdict (the watchdog cancels it at mig_stall_timeout).
STALL_NOTE_AFTER = 5.0


def qemu_death(vms: Iterable[VM], host: str, context: str = "") -> Optional[VMDiedError]:
    """The first of `vms` whose QEMU was killed by a signal (from outside, or
    a crash) without being asked to stop.  A QEMU that exited with a status
    of its own (an incoming migration that failed because the source gave
    up) is a consequence, not a root cause."""
    for vm in vms:
        died = vm.unexpected_exit()
        if died is not None and died.exitcode is not None and died.exitcode < 0:
            died.host, died.context = host, context
            return died
    return None


def interrupted(err: SyncAborted) -> bool:
    """The peer's abort was an interruption (signal, Ctrl-C), not a failure."""
    return err.kind == "interrupted"


class StallLog:
    """What the migrations of this host did when they stopped moving."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, tuple[float, Optional[float], float]] = {}
        self._notes: list[str] = []

    def progress(self, key: str, moved: float, percent: Optional[float]) -> None:
        """A sample of migration `key` (e.g. "vm1 to h2"): bytes moved, percent."""
        now = time.monotonic()
        with self._lock:
            last = self._active.get(key)
            if last is None or last[0] != moved:
                self._active[key] = (moved, percent, now)

    def ended(self, key: str) -> None:
        """Migration `key` ended: keep a note if it had stalled."""
        note = self.note(key)
        with self._lock:
            self._active.pop(key, None)
            if note:
                self._notes.append(note)

    def note(self, key: str) -> Optional[str]:
        with self._lock:
            last = self._active.get(key)
        if last is None:
            return None
        stalled = time.monotonic() - last[2]
        if stalled < STALL_NOTE_AFTER:
            return None
        at = f" at {last[1]:.1f} %" if last[1] is not None else ""
        return f"the migration of {key} had stalled{at} for {stalled:.0f} s"

    def notes(self) -> list[str]:
        with self._lock:
            active = list(self._active)
        current = [n for n in (self.note(k) for k in active) if n]
        with self._lock:
            return self._notes + current
