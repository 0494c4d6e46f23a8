"""The evidence rules of the QEMU-feature scenarios (issue #18): each FAILs
when QEMU's counters or state do not show the feature at work."""

from __future__ import annotations

from typing import Any

import pytest

from multihost_migration.scenarios._modern import passes_at_least, status_event
from multihost_migration.scenarios.migration_multifd_compression import check_compression
from multihost_migration.scenarios.migration_postcopy_preempt import check_preempt
from multihost_migration.scenarios.migration_zero_page import PAGE, check_zero_pages
from multihost_migration.verdicts import TestFail


def ram(**counters: int) -> dict[str, Any]:
    return {"status": "completed", "ram": {k.replace("_", "-"): v for k, v in counters.items()}}


def test_preempt_needs_postcopy_bytes_the_capability_and_two_connections() -> None:
    found = check_preempt(ram(postcopy_bytes=5 << 20, postcopy_requests=12), True, 2, "vm1")
    assert found["connections"] == 2 and found["postcopy_bytes"] == 5 << 20
    with pytest.raises(TestFail, match="1 connection.*main stream \\+ preempt"):
        check_preempt(ram(postcopy_bytes=5 << 20), True, 1, "vm1")
    with pytest.raises(TestFail, match="never switched to postcopy.*reads back off"):
        check_preempt(ram(postcopy_bytes=0), False, 2, "vm1")


def test_compression_judged_by_bytes_on_the_wire_against_page_bytes() -> None:
    found = check_compression(ram(multifd_bytes=30 << 20, normal_bytes=100 << 20), "zstd",
                              "zstd", 2, 3, 0.9, "vm1")
    assert found["wire_ratio"] == 0.3
    with pytest.raises(TestFail, match="1.02 >= 0.9 \\(not compressed\\)"):
        check_compression(ram(multifd_bytes=102, normal_bytes=100), "zlib", "zlib", 2, 3,
                          0.9, "vm1")
    with pytest.raises(TestFail, match="reads back 'none'.*1 connection"):
        check_compression(ram(multifd_bytes=30, normal_bytes=100), "zlib", "none", 2, 1,
                          0.9, "vm1")


def test_zero_pages_none_counts_none_multifd_counts_most() -> None:
    total = 65536 * PAGE
    assert check_zero_pages(ram(duplicate=0, normal=65000, total=total), "none", "none",
                            "vm1")["zero_pages"] == 0
    assert check_zero_pages(ram(duplicate=60000, normal=5000, total=total), "multifd",
                            "multifd", "vm1")["zero_pages"] == 60000
    with pytest.raises(TestFail, match="with none: 60000 zero pages"):
        check_zero_pages(ram(duplicate=60000, normal=5000, total=total), "none", "none", "v")
    with pytest.raises(TestFail, match="with multifd: only 0 zero pages"):
        check_zero_pages(ram(duplicate=0, normal=65000, total=total), "multifd", "multifd",
                         "v")
    with pytest.raises(TestFail, match="reads back 'legacy'"):
        check_zero_pages(ram(duplicate=60000, normal=5, total=total), "multifd", "legacy", "v")


def test_event_and_pass_matchers() -> None:
    match = status_event({"device"})
    assert match({"event": "MIGRATION", "data": {"status": "device"}})
    assert not match({"event": "MIGRATION", "data": {"status": "active"}})
    assert not match({"event": "STOP", "data": {"status": "device"}})
    assert passes_at_least(2)(ram(dirty_sync_count=2))
    assert not passes_at_least(2)(ram(dirty_sync_count=1))
