"""Fail fast while busy: a peer's abort reaches a host that is not at a sync point.

A host learns of a peer's failure from the sync session it waits in.  A host
busy elsewhere (booting a guest, running commands in it, migrating) would
only learn at its next sync point, after its current operation ran to its
own deadline.  `AbortWatch` closes that gap: every host keeps one extra
session open for the whole test, with a waiting thread in it.

    session "<job>:watch", hosts = the test's hosts + END

The waiting threads are released in one of three ways:

- a host's scenario failed: it aborts the watch session (`abort`) with its
  reason; every peer's thread gets SyncAborted at once and runs `on_abort`
  (MultihostMigration stops the local VMs, so whatever waits on them fails
  within moments, and reports the peer's reason as the verdict);
- a host died: the sync server sees its connection drop and aborts the
  session for the others ("lost contact with <host>"); if the master
  itself died, the others lose their connection: both fire `on_abort`;
- the test ended well: after the last barrier the master joins as END,
  which completes the barrier, and every thread returns quietly.

END is a phantom member that only the master plays, at the very end; until
then the barrier cannot complete, whatever the hosts do.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional, Sequence

from multihost_migration.errors import SyncAborted, SyncBarrierTimeout, SyncError
from multihost_migration.sync import SyncData

log = logging.getLogger(__name__)

END = "~end"
_END_TIMEOUT = 10.0

OnAbort = Callable[[SyncAborted], None]


class AbortWatch:
    """One host's watcher thread in the job-wide watch session."""

    def __init__(self, master: str, hostid: str, hosts: Sequence[str], session_id: str,
                 port: int, secret: str, lifetime: float, on_abort: OnAbort) -> None:
        self._args = (master, list(hosts) + [END], session_id, port, secret)
        self.hostid = hostid
        self.lifetime = lifetime
        self.on_abort = on_abort
        self.fired: Optional[SyncAborted] = None
        self._fire_lock = threading.Lock()
        self._ending = threading.Event()
        self._session = self._new(hostid)
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name=f"abort-watch-{hostid}")

    def _new(self, member: str) -> SyncData:
        master, hosts, session_id, port, secret = self._args
        return SyncData(master, member, hosts, session_id=session_id, port=port,
                        secret=secret)

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        try:
            self._session.barrier("end", timeout=self.lifetime)
            log.debug("abort watch: the test ended on every host")
        except SyncAborted as err:
            self._fire(err)
        except SyncBarrierTimeout:
            log.warning("abort watch: no end after %.0f s; watching stops", self.lifetime)
        except SyncError as err:
            if not self._ending.is_set():
                master = self._args[0]
                self._fire(SyncAborted(self._args[2], master,
                                       f"the sync server on the master host is gone: {err}"))
        finally:
            self._session.close()

    def fire(self, err: SyncAborted) -> None:
        """A peer's failure learnt another way (the controller's relay): as if
        the watch session had been aborted with it."""
        self._fire(err)
        self._session.interrupt(err)

    def _fire(self, err: SyncAborted) -> None:
        if err.host == self.hostid:  # our own abort: the local error is the verdict
            return
        with self._fire_lock:
            if self.fired is not None:   # the first report is the root cause
                return
            self.fired = err
        log.error("%s: a peer aborted the test while this host was busy: %s",
                  self.hostid, err.reason)
        try:
            self.on_abort(err)
        except Exception as hook_err:  # noqa: BLE001 - the watcher must not die silently
            log.error("abort watch: stopping local work failed: %s", hook_err)

    def abort(self, reason: str, kind: str = "failed") -> None:
        """Release every peer's watcher with `reason` (best effort)."""
        session = self._new(self.hostid)
        try:
            session.abort(reason, timeout=5.0, kind=kind)
        except SyncError as err:
            log.warning("abort watch: could not abort: %s", err)
        finally:
            session.close()

    def end(self) -> None:
        """Master, once every host passed the last barrier: release all watchers."""
        self._ending.set()
        closer = self._new(END)
        try:
            closer.barrier("end", timeout=_END_TIMEOUT)
        except SyncError as err:
            log.warning("abort watch: could not end the watch session: %s", err)
        finally:
            closer.close()
        self._thread.join(_END_TIMEOUT)

    def stop(self) -> None:
        """Non-master hosts at the end: the master's END releases the thread."""
        self._ending.set()
        self._thread.join(_END_TIMEOUT)
