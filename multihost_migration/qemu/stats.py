"""Migration statistics parsed from a `query-migrate` reply."""

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

    @classmethod
    def from_query(cls, reply: Mapping[str, Any]) -> "MigrationStats":
        ram = reply.get("ram") or {}
        mbps = ram.get("mbps")
        return cls(
            status=str(reply.get("status", "none")),
            total_time_ms=_opt_int(reply.get("total-time")),
            downtime_ms=_opt_int(reply.get("downtime")),
            expected_downtime_ms=_opt_int(reply.get("expected-downtime")),
            setup_time_ms=_opt_int(reply.get("setup-time")),
            transferred=_opt_int(ram.get("transferred")),
            remaining=_opt_int(ram.get("remaining")),
            total=_opt_int(ram.get("total")),
            throughput_mbps=float(mbps) if isinstance(mbps, (int, float)) else None,
            dirty_sync_count=_opt_int(ram.get("dirty-sync-count")),
            postcopy_requests=_opt_int(ram.get("postcopy-requests")),
            cpu_throttle_percentage=_opt_int(reply.get("cpu-throttle-percentage")),
            error_desc=(str(reply["error-desc"]) if reply.get("error-desc") is not None
                        else None),
        )

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (field names as attributes, None kept)."""
        return asdict(self)

    def summary(self) -> str:
        return (f"status={self.status} total={self.total_time_ms}ms "
                f"downtime={self.downtime_ms}ms transferred={self.transferred} "
                f"mbps={self.throughput_mbps}")
