"""The legacy client job's state, one per process: what the legacy module
functions without an object to hang it on need (SyncData's server, the
migration running, env_process's VMs, a background thread's verdict).

The client job makes it (switch.activate) before it imports a legacy
module; `current()` outside a legacy job is an error naming the call.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from multihost_migration.params import Params
from multihost_migration.verdicts import TestBaseException

if TYPE_CHECKING:
    from multihost_migration.legacy.migration import MultihostMigration
    from multihost_migration.sync import SyncData


class LegacyContext:
    """One legacy client job: its params, test, env and search path."""

    def __init__(self, params: Params, test: Any, env: Any, search: list[Path]) -> None:
        self.params = params
        self.test = test
        self.env = env
        #: Directories legacy modules (and sub tests) are looked up in.
        self.search = search
        self.migration: Optional["MultihostMigration"] = None
        self._pending: Optional[TestBaseException] = None
        self._sessions: "set[SyncData]" = set()
        self._lock = threading.Lock()

    @property
    def hostid(self) -> str:
        return str(self.params.get("hostid", ""))

    # -- a verdict raised where nobody joins (a background thread) ----------

    def note_verdict(self, err: TestBaseException) -> None:
        """A background thread's TEST_NA (or other verdict): the main thread
        raises it at its next legacy wait or guest command."""
        with self._lock:
            self._pending = self._pending or err

    def raise_pending(self) -> None:
        with self._lock:
            err = self._pending
        if err is not None:
            raise err

    # -- legacy sync sessions (released when a peer fails) -----------------

    def opened(self, session: "SyncData") -> None:
        with self._lock:
            self._sessions.add(session)

    def closed(self, session: "SyncData") -> None:
        with self._lock:
            self._sessions.discard(session)

    def sessions(self) -> "list[SyncData]":
        with self._lock:
            return list(self._sessions)


_current: Optional[LegacyContext] = None


def set_current(context: Optional[LegacyContext]) -> None:
    global _current
    _current = context


def current(call: str = "") -> LegacyContext:
    """The legacy job's context; LegacyUnsupported outside a legacy job."""
    if _current is None:
        from multihost_migration.legacy.unsupported import LegacyUnsupported, caller_location
        raise LegacyUnsupported(call or "this legacy call", caller_location(2),
                                "only inside a legacy client job (legacy_api)")
    return _current
