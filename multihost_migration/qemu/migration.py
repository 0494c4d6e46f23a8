"""Waiting for a migration to end, on either side, with a deadline.

MIGRATION events (capability `events`, enabled at launch) wake the waiter
at once; `query-migrate` is polled at least every POLL_INTERVAL seconds as
well, so a missed event only costs latency, never correctness.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

from ..errors import MigrationFailed, MigrationTimeout, QMPError, VMError
from .stats import TERMINAL_STATUSES, MigrationStats

if TYPE_CHECKING:
    from .vm import VM

POLL_INTERVAL = 1.0
#: After an incoming migration completes, seconds to wait for runstate "running".
RUN_TIMEOUT = 10.0
#: After a source completes, seconds to wait for final statistics.
FINAL_STATS_TIMEOUT = 5.0


def _is_terminal_event(event: dict[str, Any]) -> bool:
    data = event.get("data") or {}
    return event.get("event") == "MIGRATION" and data.get("status") in TERMINAL_STATUSES


class MigrationWaiter:
    """Created *before* issuing migrate / migrate-incoming (takes an event mark)."""

    def __init__(self, vm: "VM", mark: Optional[int] = None,
                 postcopy_after: Optional[float] = None) -> None:
        self.vm = vm
        self.postcopy_after = postcopy_after
        self.started = time.monotonic()
        channel = vm._channel("migration")
        self.events = channel.events
        self.mark = self.events.mark() if mark is None else mark

    def _sleep_for_event(self, timeout: float) -> None:
        self.events.wait_for(_is_terminal_event, self.mark, max(0.0, timeout))

    def _failed(self, reason: str, stats: Optional[MigrationStats] = None,
                timeout: bool = False) -> MigrationFailed:
        cls = MigrationTimeout if timeout else MigrationFailed
        return cls(self.vm.name, reason,
                   status=stats.status if stats else None,
                   error_desc=stats.error_desc if stats else None,
                   stats=stats.as_dict() if stats else None,
                   log_tail=self.vm.log_tail())

    def _stats(self) -> Optional[MigrationStats]:
        try:
            return self.vm.migration_stats()
        except (QMPError, VMError):
            return None

    def wait_source(self, timeout: float) -> MigrationStats:
        """Until completed (returned) or failed/cancelled/deadline (raised)."""
        deadline = time.monotonic() + timeout
        stats: Optional[MigrationStats] = None
        while True:
            self._sleep_for_event(min(POLL_INTERVAL, deadline - time.monotonic()))
            current = self._stats()
            if current is None:
                if not self.vm.is_alive():
                    raise self._failed("source QEMU exited during migration", stats)
                continue
            stats = current
            if stats.finished:
                break
            self._maybe_start_postcopy(stats)
            if time.monotonic() >= deadline:
                self._cancel()
                raise self._failed(f"not finished after {timeout:.0f}s; cancelled",
                                   self._stats() or stats, timeout=True)
        if stats.status != "completed":
            raise self._failed(f"migration {stats.status}", stats)
        return self._final_source_stats(stats)

    def _final_source_stats(self, stats: MigrationStats) -> MigrationStats:
        # QEMU sets status "completed" before it computes total-time and
        # downtime; runstate "postmigrate" is set after, so wait for it.
        deadline = time.monotonic() + FINAL_STATS_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self.vm.query_status() == "postmigrate":
                    break
            except (QMPError, VMError):
                break
            time.sleep(0.02)
        return self._stats() or stats

    def _maybe_start_postcopy(self, stats: MigrationStats) -> None:
        if (self.postcopy_after is not None and stats.status == "active"
                and time.monotonic() - self.started >= self.postcopy_after):
            self.vm.log.info("switching to postcopy after %.1fs", self.postcopy_after)
            self.postcopy_after = None
            try:
                self.vm.qmp("migrate-start-postcopy")
            except (QMPError, VMError) as err:
                self.vm.log.warning("migrate-start-postcopy: %s", err)

    def _cancel(self) -> None:
        try:
            self.vm.qmp("migrate_cancel")
        except (QMPError, VMError) as err:
            self.vm.log.warning("migrate_cancel: %s", err)

    def wait_incoming(self, timeout: float, check: bool) -> str:
        """Until the incoming side completes and the guest runs."""
        deadline = time.monotonic() + timeout
        while True:
            self._sleep_for_event(min(POLL_INTERVAL, deadline - time.monotonic()))
            stats = self._stats()
            if stats is None and not self.vm.is_alive():
                # QEMU exits when an incoming migration fails.
                return self._incoming_failed(check, "destination QEMU exited", None)
            if stats is not None and stats.status == "completed":
                self._wait_running(deadline)
                return "completed"
            if stats is not None and stats.status in ("failed", "cancelled"):
                return self._incoming_failed(check, f"incoming migration {stats.status}",
                                             stats)
            if time.monotonic() >= deadline:
                if check:
                    raise self._failed(f"incoming migration not finished after "
                                       f"{timeout:.0f}s", stats, timeout=True)
                return stats.status if stats else "timeout"

    def _incoming_failed(self, check: bool, reason: str,
                         stats: Optional[MigrationStats]) -> str:
        if check:
            raise self._failed(reason, stats)
        return "failed"

    def _wait_running(self, deadline: float) -> None:
        run_deadline = min(deadline, time.monotonic() + RUN_TIMEOUT)
        while True:
            status = self.vm.query_status()
            if status == "running" or time.monotonic() >= run_deadline:
                if status != "running":
                    self.vm.log.warning("after incoming migration runstate is %s", status)
                return
            time.sleep(0.05)
