"""The evidence rules of the QEMU-feature scenarios (issue #18): each FAILs
when QEMU's counters or state do not show the feature at work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from multihost_migration.scenarios._modern import passes_at_least, status_event
from multihost_migration.scenarios.migration_multifd_compression import (check_compression,
                                                                         tx_bytes)
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
    found = check_compression(ram(multifd_bytes=100 << 20, normal_bytes=100 << 20), "zstd",
                              "zstd", 2, 3, 30 << 20, 0.6, "vm1")
    assert found["wire_ratio"] == 0.3 and found["qemu_ratio"] == 1.0   # 7.2's counting
    with pytest.raises(TestFail, match="102 bytes on the wire .* 1.02 >= 0.6 "
                                       "\\(not compressed\\)"):
        check_compression(ram(multifd_bytes=100, normal_bytes=100), "zlib", "zlib", 2, 3,
                          102, 0.6, "vm1")
    with pytest.raises(TestFail, match="reads back 'none'.*1 connection"):
        check_compression(ram(multifd_bytes=30, normal_bytes=100), "zlib", "none", 2, 1,
                          30, 0.6, "vm1")


def test_interface_counters_are_read_from_proc_net_dev(tmp_path: Path) -> None:
    table = tmp_path / "dev"
    table.write_text("Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n"
                     "    lo: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0\n"
                     "  eth0: 1000 9 0 0 0 0 0 0 123456 77 0 0 0 0 0 0\n")
    assert tx_bytes("eth0", str(table)) == 123456
    assert tx_bytes("eth9", str(table)) is None


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


def test_lost_writes_allowance_only_where_seen() -> None:
    from multihost_migration.scenarios._defects import tcg_lost_writes_possible
    assert tcg_lost_writes_possible({"accel": "tcg", "qemu_pair_versions": "7.2.22 7.2.22"})
    assert not tcg_lost_writes_possible({"accel": "tcg",
                                         "qemu_pair_versions": "10.0.2 10.0.2"})
    # a mixed pair migrates both ways: one of them from the 7.2 source
    assert tcg_lost_writes_possible({"accel": "tcg", "qemu_pair_versions": "10.0.2 7.2.22"})
    assert not tcg_lost_writes_possible({"accel": "kvm", "qemu_pair_versions": "7.2.22 7.2.22"})
    # versions unknown (no preflight): the allowance applies, as before
    assert tcg_lost_writes_possible({"accel": "tcg"})
