"""Migration statistics parsed from a `query-migrate` reply.

`MigrationStats` is one snapshot; the waiter fills in `samples` (the
progress of the migration, one `MigrationSample` about every 200 ms) and
`downtime_limit_ms` (the downtime-limit parameter read back from QEMU) on
the final snapshot.  `guest_downtime_ms` and `bad_pages` come from checks
inside the guest and are filled in by callers with `dataclasses.replace`.

This module is the one reader of query-migrate's numbers: callers that need
one counter of its `ram` section (multifd-bytes, postcopy-requests...) or the
share of RAM sent use `ram_counter` and `ram_progress_pct`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
#: Statuses where the source may still be running the guest.
ACTIVE_STATUSES = frozenset({"setup", "active", "pre-switchover", "device",
                             "postcopy-active", "postcopy-paused",
                             "postcopy-recover", "cancelling", "wait-unplug",
                             "colo"})


def _opt_int(value: Any) -> Optional[int]:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _opt_float(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _ram(reply: Mapping[str, Any]) -> Mapping[str, Any]:
    ram = reply.get("ram")
    return ram if isinstance(ram, Mapping) else {}


def ram_counter(reply: Mapping[str, Any], key: str) -> Optional[int]:
    """An integer of query-migrate's `ram` section, None when QEMU omits it."""
    value = _ram(reply).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def ram_progress_pct(reply: Mapping[str, Any]) -> Optional[float]:
    """Percent of the guest RAM done in a query-migrate reply (None before
    QEMU reports RAM totals)."""
    total, remaining = ram_counter(reply, "total"), ram_counter(reply, "remaining")
    if total is None or remaining is None or total <= 0:
        return None
    return 100.0 * (total - remaining) / total


@dataclass(frozen=True)
class MigrationSample:
    """Progress at `t_ms` milliseconds after the migrate command."""

    t_ms: int
    status: str
    transferred: Optional[int] = None
    remaining: Optional[int] = None
    total: Optional[int] = None
    mbps: Optional[float] = None
    passes: Optional[int] = None
    throttle: Optional[int] = None   # cpu-throttle-percentage (auto-converge)

    @classmethod
    def from_query(cls, t_ms: int, reply: Mapping[str, Any]) -> "MigrationSample":
        ram = _ram(reply)
        return cls(t_ms=int(t_ms), status=str(reply.get("status", "none")),
                   transferred=_opt_int(ram.get("transferred")),
                   remaining=_opt_int(ram.get("remaining")),
                   total=_opt_int(ram.get("total")),
                   mbps=_opt_float(ram.get("mbps")),
                   passes=_opt_int(ram.get("dirty-sync-count")),
                   throttle=_opt_int(reply.get("cpu-throttle-percentage")))


@dataclass(frozen=True)
class MigrationStats:
    """One snapshot of query-migrate; fields are None when QEMU omits them."""

    status: str
    total_time_ms: Optional[int] = None
    downtime_ms: Optional[int] = None
    expected_downtime_ms: Optional[int] = None
    setup_time_ms: Optional[int] = None
    transferred: Optional[int] = None
    remaining: Optional[int] = None
    total: Optional[int] = None
    throughput_mbps: Optional[float] = None
    dirty_sync_count: Optional[int] = None
    postcopy_requests: Optional[int] = None
    cpu_throttle_percentage: Optional[int] = None
    error_desc: Optional[str] = None
    xbzrle_pages: Optional[int] = None     # pages sent xbzrle-encoded
    samples: tuple[MigrationSample, ...] = ()
    downtime_limit_ms: Optional[int] = None
    guest_downtime_ms: Optional[float] = None
    bad_pages: Optional[int] = None

    @classmethod
    def from_query(cls, reply: Mapping[str, Any]) -> "MigrationStats":
        ram = _ram(reply)
        xbzrle = reply.get("xbzrle-cache") or {}
        if not isinstance(xbzrle, Mapping):
            xbzrle = {}
        return cls(
            status=str(reply.get("status", "none")),
            total_time_ms=_opt_int(reply.get("total-time")),
            downtime_ms=_opt_int(reply.get("downtime")),
            expected_downtime_ms=_opt_int(reply.get("expected-downtime")),
            setup_time_ms=_opt_int(reply.get("setup-time")),
            transferred=_opt_int(ram.get("transferred")),
            remaining=_opt_int(ram.get("remaining")),
            total=_opt_int(ram.get("total")),
            throughput_mbps=_opt_float(ram.get("mbps")),
            dirty_sync_count=_opt_int(ram.get("dirty-sync-count")),
            postcopy_requests=_opt_int(ram.get("postcopy-requests")),
            cpu_throttle_percentage=_opt_int(reply.get("cpu-throttle-percentage")),
            error_desc=(str(reply["error-desc"]) if reply.get("error-desc") is not None
                        else None),
            xbzrle_pages=_opt_int(xbzrle.get("pages")),
        )

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def passes(self) -> Optional[int]:
        """Dirty-bitmap sync passes (QEMU's dirty-sync-count)."""
        return self.dirty_sync_count

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (field names as attributes, None kept); `samples`
        is a list of dicts, `passes` is added."""
        data = asdict(self)
        data["samples"] = [asdict(sample) for sample in self.samples]
        data["passes"] = self.passes
        return data

    def summary(self) -> str:
        return (f"status={self.status} total={self.total_time_ms}ms "
                f"downtime={self.downtime_ms}ms transferred={self.transferred} "
                f"mbps={self.throughput_mbps} passes={self.passes} "
                f"samples={len(self.samples)}")
