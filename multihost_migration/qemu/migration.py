"""Waiting for a migration to end, on either side, with a deadline.

MIGRATION events (capability `events`, enabled at launch) wake the waiter
at once; `query-migrate` is polled at least every POLL_INTERVAL seconds
(SAMPLE_INTERVAL on the source) as well, so a missed event only costs
latency, never correctness.

On the source every poll is kept as a `MigrationSample` (for charts), and
the waiter drives the migration's decisions:

* postcopy_after (seconds) / postcopy_after_passes (N complete dirty-sync
  passes, i.e. dirty-sync-count > N): issue migrate-start-postcopy once;
* status pre-switchover (capability pause-before-switchover): call the
  `on_pre_switchover` hook with the current statistics, then
  migrate-continue.  If the hook raises, the migration is cancelled and the
  error propagates.

The waiter works through the QEMU's `QemuLink` (its QMP channel and
process), not the VM: it knows nothing of the VM's lifecycle, which the VM
updates from what the waiter returns or raises.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union

from ..errors import MigrationFailed, MigrationTimeout, QMPError, VMError
from .link import QemuLink
from .stats import TERMINAL_STATUSES, MigrationSample, MigrationStats
from .transport import Transport

POLL_INTERVAL = 1.0
#: Seconds between query-migrate samples on the source.
SAMPLE_INTERVAL = 0.2
#: After an incoming migration completes, seconds to wait for runstate "running".
RUN_TIMEOUT = 10.0
#: After a source completes, seconds to wait for final statistics.
FINAL_STATS_TIMEOUT = 5.0
#: A cancel QEMU has not carried out after this long (7.2 stays "cancelling"
#: while its connect to a port that drops packets is pending, ~2 min) ends
#: the wait: the migration is over for the test.
CANCELLING_TIMEOUT = 10.0


_WAKE_STATUSES = TERMINAL_STATUSES | {"pre-switchover"}

PreSwitchoverHook = Callable[[MigrationStats], None]


@dataclass(frozen=True)
class MigrateRequest:
    """One outgoing migration, as `VM.migrate` takes it.

    `dest_host` may be a host id (the VM translates it with its
    `address_of`); `port` may map VM names to ports.  Per transport: tcp ->
    host:port; unix -> `target` path; exec -> `target` command, default
    socat to host:port; fd -> `fd` (passed to QEMU) or getfd name `target`.
    `postcopy_after` (seconds) / `postcopy_after_passes` (complete dirty-sync
    passes): switch to postcopy (capability postcopy-ram on both sides).
    `on_pre_switchover(stats)` runs while the source is paused before the
    switchover (capability pause-before-switchover).  `wait=False` returns
    once the migration started; `destroy_source` stops the source after it.
    """

    dest_host: str
    port: Union[int, Mapping[str, int]] = 0
    transport: Transport = Transport.TCP
    timeout: float = 300.0
    target: Optional[str] = None
    fd: Optional[int] = None
    wait: bool = True
    destroy_source: bool = False
    postcopy_after: Optional[float] = None
    postcopy_after_passes: Optional[int] = None
    on_pre_switchover: Optional[PreSwitchoverHook] = None

    def port_of(self, vm: str) -> int:
        """This VM's port (`port` may map VM names to ports)."""
        return self.port[vm] if isinstance(self.port, Mapping) else int(self.port)


def _is_wake_event(event: dict[str, Any]) -> bool:
    data = event.get("data") or {}
    return event.get("event") == "MIGRATION" and data.get("status") in _WAKE_STATUSES


class MigrationWaiter:
    """Created *before* issuing migrate / migrate-incoming (takes an event mark)."""

    def __init__(self, qmp: QemuLink, mark: Optional[int] = None,
                 postcopy_after: Optional[float] = None,
                 postcopy_after_passes: Optional[int] = None,
                 on_pre_switchover: Optional[PreSwitchoverHook] = None,
                 sample_interval: float = SAMPLE_INTERVAL) -> None:
        self.qmp = qmp
        self.postcopy_after = postcopy_after
        self.postcopy_after_passes = postcopy_after_passes
        self.on_pre_switchover = on_pre_switchover
        self.sample_interval = sample_interval
        self.samples: list[MigrationSample] = []
        self.downtime_limit_ms: Optional[int] = None
        self.switched_to_postcopy = False
        self.continued = False
        self.started = time.monotonic()
        self.events = qmp.channel.events
        self.mark = self.events.mark() if mark is None else mark

    def _sleep_for_event(self, timeout: float) -> None:
        self.events.wait_for(_is_wake_event, self.mark, max(0.0, timeout))
        self.mark = self.events.mark()

    def read_downtime_limit(self) -> None:
        """Remember downtime-limit as QEMU has it (call before migrate)."""
        try:
            value = self.qmp.execute("query-migrate-parameters").get("downtime-limit")
        except (QMPError, VMError) as err:
            self.qmp.log.debug("query-migrate-parameters: %s", err)
            return
        self.downtime_limit_ms = int(value) if isinstance(value, int) else None

    def _sample(self) -> Optional[MigrationStats]:
        try:
            reply = self.qmp.query_migrate()
        except (QMPError, VMError):
            return None
        t_ms = int((time.monotonic() - self.started) * 1000)
        self.samples.append(MigrationSample.from_query(t_ms, reply))
        return MigrationStats.from_query(reply)

    def _with_samples(self, stats: MigrationStats) -> MigrationStats:
        return dataclasses.replace(stats, samples=tuple(self.samples),
                                   downtime_limit_ms=self.downtime_limit_ms)

    def _failed(self, reason: str, stats: Optional[MigrationStats] = None,
                timeout: bool = False) -> MigrationFailed:
        cls = MigrationTimeout if timeout else MigrationFailed
        return cls(self.qmp.name, reason,
                   status=stats.status if stats else None,
                   error_desc=stats.error_desc if stats else None,
                   stats=self._with_samples(stats).as_dict() if stats else None,
                   log_tail=self.qmp.log_tail())

    def _stats(self) -> Optional[MigrationStats]:
        try:
            return self.qmp.migration_stats()
        except (QMPError, VMError):
            return None

    def wait_source(self, timeout: float) -> MigrationStats:
        """Until completed (returned) or failed/cancelled/deadline (raised)."""
        deadline = time.monotonic() + timeout
        stats: Optional[MigrationStats] = None
        cancelling_since: Optional[float] = None
        while True:
            self._sleep_for_event(min(self.sample_interval, deadline - time.monotonic()))
            current = self._sample()
            if current is None:
                if not self.qmp.is_alive():
                    raise self._failed("source QEMU exited during migration", stats)
                continue
            stats = current
            if stats.finished:
                break
            cancelling_since = self._check_cancelling(stats, cancelling_since)
            self._maybe_start_postcopy(stats)
            self._maybe_continue(stats)
            if time.monotonic() >= deadline:
                self._cancel()
                raise self._failed(f"not finished after {timeout:.0f}s; cancelled",
                                   self._stats() or stats, timeout=True)
        if stats.status != "completed":
            raise self._failed(f"migration {stats.status}", stats)
        return self._final_source_stats(stats)

    def _check_cancelling(self, stats: MigrationStats,
                          since: Optional[float]) -> Optional[float]:
        """When the "cancelling" status began; raise once it lasted too long."""
        if stats.status != "cancelling":
            return None
        now = time.monotonic()
        if since is not None and now - since > CANCELLING_TIMEOUT:
            raise self._failed(f"migration cancelled, but QEMU still 'cancelling' "
                               f"{CANCELLING_TIMEOUT:.0f} s later", stats)
        return since if since is not None else now

    def _final_source_stats(self, stats: MigrationStats) -> MigrationStats:
        # QEMU sets status "completed" before it computes total-time and
        # downtime; runstate "postmigrate" is set after, so wait for it.
        deadline = time.monotonic() + FINAL_STATS_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self.qmp.query_status() == "postmigrate":
                    break
            except (QMPError, VMError):
                break
            time.sleep(0.02)
        final = self._stats() or stats
        t_ms = int((time.monotonic() - self.started) * 1000)
        self.samples.append(MigrationSample(
            t_ms, final.status, final.transferred, final.remaining, final.total,
            final.throughput_mbps, final.dirty_sync_count))
        return self._with_samples(final)

    def _maybe_start_postcopy(self, stats: MigrationStats) -> None:
        if self.switched_to_postcopy or stats.status != "active":
            return
        by_time = (self.postcopy_after is not None
                   and time.monotonic() - self.started >= self.postcopy_after)
        by_passes = (self.postcopy_after_passes is not None
                     and stats.dirty_sync_count is not None
                     and stats.dirty_sync_count > self.postcopy_after_passes)
        if not (by_time or by_passes):
            return
        self.qmp.log.info("switching to postcopy (after %.1fs, %s passes)",
                         time.monotonic() - self.started, stats.dirty_sync_count)
        self.switched_to_postcopy = True
        try:
            self.qmp.execute("migrate-start-postcopy")
        except (QMPError, VMError) as err:
            self.qmp.log.warning("migrate-start-postcopy: %s", err)

    def _maybe_continue(self, stats: MigrationStats) -> None:
        if stats.status != "pre-switchover" or self.continued:
            return
        self.continued = True
        if self.on_pre_switchover is not None:
            try:
                self.on_pre_switchover(self._with_samples(stats))
            except BaseException:
                self._cancel()
                raise
        self.qmp.log.info("pre-switchover: migrate-continue")
        self.qmp.execute("migrate-continue", {"state": "pre-switchover"})

    def _cancel(self) -> None:
        try:
            self.qmp.execute("migrate_cancel")
        except (QMPError, VMError) as err:
            self.qmp.log.warning("migrate_cancel: %s", err)

    def wait_incoming(self, timeout: float, check: bool,
                      expect_running: bool = True) -> str:
        """Until the incoming side completes and (if `expect_running`) the
        guest runs; an offline migration leaves the guest paused."""
        deadline = time.monotonic() + timeout
        while True:
            self._sleep_for_event(min(POLL_INTERVAL, deadline - time.monotonic()))
            stats = self._stats()
            if stats is None and not self.qmp.is_alive():
                # QEMU exits when an incoming migration fails.
                return self._incoming_failed(check, "destination QEMU exited", None)
            if stats is not None and stats.status == "completed":
                if expect_running:
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
            status = self.qmp.query_status()
            if status == "running" or time.monotonic() >= run_deadline:
                if status != "running":
                    self.qmp.log.warning("after incoming migration runstate is %s", status)
                return
            time.sleep(0.05)
