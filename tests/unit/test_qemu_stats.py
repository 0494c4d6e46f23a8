"""MigrationStats parsing (no QEMU)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from multihost_migration.qemu.stats import MigrationStats
from multihost_migration.qemu.transport import incoming_uri, listening_port, outgoing_uri

# A reply as QEMU 7.2 sends it after a completed precopy migration.
COMPLETED: dict[str, Any] = {
    "status": "completed", "setup-time": 2, "downtime": 55, "total-time": 1149,
    "ram": {"transferred": 87141946, "remaining": 0, "total": 268967936,
            "duplicate": 60000, "normal": 21000, "normal-bytes": 86016000,
            "dirty-sync-count": 3, "mbps": 608.655818657367, "page-size": 4096,
            "postcopy-requests": 0, "multifd-bytes": 0, "pages-per-second": 80000,
            "precopy-bytes": 87141946, "downtime-bytes": 0, "postcopy-bytes": 0,
            "dirty-pages-rate": 0, "skipped": 0},
}


def test_completed_reply() -> None:
    stats = MigrationStats.from_query(COMPLETED)
    assert stats.status == "completed" and stats.succeeded and stats.finished
    assert stats.total_time_ms == 1149 and stats.downtime_ms == 55
    assert stats.setup_time_ms == 2
    assert stats.transferred == 87141946 and stats.remaining == 0
    assert stats.total == 268967936 and stats.dirty_sync_count == 3
    assert stats.throughput_mbps is not None and abs(stats.throughput_mbps - 608.66) < 0.01
    assert stats.error_desc is None and stats.cpu_throttle_percentage is None
    assert json.loads(json.dumps(stats.as_dict()))["downtime_ms"] == 55
    assert "downtime=55ms" in stats.summary()


def test_failed_reply() -> None:
    stats = MigrationStats.from_query({"status": "failed",
                                       "error-desc": "Connection refused"})
    assert stats.finished and not stats.succeeded
    assert stats.error_desc == "Connection refused" and stats.total_time_ms is None


def test_active_and_empty_replies() -> None:
    active = MigrationStats.from_query({"status": "active", "expected-downtime": 300,
                                        "cpu-throttle-percentage": 20,
                                        "ram": {"remaining": 10}})
    assert not active.finished and active.expected_downtime_ms == 300
    assert active.cpu_throttle_percentage == 20 and active.remaining == 10
    assert MigrationStats.from_query({}).status == "none"


@given(st.dictionaries(st.sampled_from(["status", "total-time", "downtime", "ram",
                                        "error-desc", "setup-time"]),
                       st.one_of(st.none(), st.integers(), st.text(), st.floats(),
                                 st.dictionaries(st.text(), st.integers()))))
def test_never_crashes_on_odd_replies(reply: dict[str, Any]) -> None:
    if not isinstance(reply.get("ram", {}), dict):
        reply["ram"] = {}
    stats = MigrationStats.from_query(reply)
    json.dumps(stats.as_dict())


def test_uris() -> None:
    assert incoming_uri("tcp", "0.0.0.0", 0) == "tcp:0.0.0.0:0"
    assert outgoing_uri("tcp", "::1", 4444) == "tcp:[::1]:4444"
    assert incoming_uri("unix", target="/r/m.sock") == "unix:/r/m.sock"
    assert outgoing_uri("fd", target="mig") == "fd:mig"
    assert listening_port({"status": "setup", "socket-address": [
        {"type": "inet", "host": "0.0.0.0", "port": "40411"}]}) == 40411
    assert listening_port({"status": "setup"}) is None
