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


def test_cancel_defects_apply_only_to_a_source_qemu_older_than_the_fix() -> None:
    from multihost_migration.scenarios._defects import (CANCEL_IN_DEVICE, CANCEL_IN_POSTCOPY,
                                                        host_version, version_key)
    assert version_key("10.0.2") == (10, 0, 2) and version_key("7.2.22") < version_key("10.0")
    assert version_key("9.2.0-rc1") == (9, 2, 0)
    for defect in (CANCEL_IN_DEVICE, CANCEL_IN_POSTCOPY):
        assert defect.applies("7.2.22") and defect.applies("9.2.4")
        assert not defect.applies("10.0.2") and not defect.applies("10.1.0")
        assert not defect.applies(None) and not defect.applies("")   # unknown: never
    params = {"hosts": ["h1", "h2"], "qemu_pair_versions": "7.2.22 10.0.2"}
    assert host_version(params, "h1") == "7.2.22" and host_version(params, "h2") == "10.0.2"
    assert host_version(params, "h3") is None
    assert host_version({"hosts": ["h1", "h2"]}, "h1") is None          # no preflight
    assert host_version({"hosts": ["h1", "h2"], "qemu_pair_versions": "7.2.22"}, "h1") is None
    text = CANCEL_IN_POSTCOPY.warning("7.2.22", "source 'cancelled', destination exited")
    assert text.startswith("KNOWN QEMU 7.2.22 DEFECT (migrate_cancel accepted in postcopy")
    assert "Reject qmp_migrate_cancel after postcopy" in text and "first in QEMU 10.0" in text
    assert text.endswith("source 'cancelled', destination exited")


def test_cancel_defect_signatures() -> None:
    from multihost_migration.scenarios._defects import (outran_signature,
                                                        postcopy_cancel_signature,
                                                        two_copies_signature)
    assert postcopy_cancel_signature("cancelled", dst_alive=False, dst_incoming="failed")
    assert postcopy_cancel_signature("cancelled", dst_alive=True, dst_incoming="failed")
    # the destination kept the guest (or the source did not take the cancel): not it
    assert not postcopy_cancel_signature("cancelled", dst_alive=True,
                                         dst_incoming="postcopy-active")
    assert not postcopy_cancel_signature("completed", dst_alive=False, dst_incoming="failed")
    assert two_copies_signature("cancelled", "completed", "running")
    assert two_copies_signature("cancelled", "completed", "paused")    # 7.2 showed both
    assert not two_copies_signature("failed", "completed", "running")
    assert not two_copies_signature("cancelled", "failed", "running")
    assert not two_copies_signature("cancelled", "completed", "internal-error")
    assert outran_signature([3, 12], sourced=2)
    assert not outran_signature([3, 450], sourced=2)   # a late cancel, not on the event
    assert not outran_signature([3, -1], sourced=2)    # no timestamp: not shown on the event
    assert not outran_signature([3], sourced=2)        # one was cancelled
    assert not outran_signature([], sourced=0)


def test_event_age_from_qemus_timestamp() -> None:
    import time as clock

    from multihost_migration.scenarios.migration_cancel_states import event_age_ms
    now = clock.time() - 0.25
    event = {"event": "MIGRATION", "data": {"status": "device"},
             "timestamp": {"seconds": int(now), "microseconds": int(now % 1 * 1e6)}}
    assert 240 <= event_age_ms(event) < 2000
    assert event_age_ms({"event": "MIGRATION"}) == -1


class _Mig:
    def __init__(self, src: bool, cancel: bool) -> None:
        self.src, self.params = src, {"cancel_in": "device"} if cancel else {}

    def is_src(self) -> bool:
        return self.src


def _judge(version: str, lags: list[int], state: str = "device") -> list[str]:
    """CancelStateMigration._never_took on a stand-in: the warnings, or raises."""
    from types import SimpleNamespace

    from multihost_migration.scenarios.migration_cancel_states import CancelStateMigration
    warned: list[str] = []
    host = SimpleNamespace(
        too_late=[f"mig{i}: sent {lag} ms after the event, completed" for i, lag in
                  enumerate(lags)],
        lags=lags, hostid="h1", warn=warned.append,
        params={"hosts": ["h1", "h2"], "qemu_pair_versions": f"{version} {version}"},
        migrations=[_Mig(True, True), _Mig(False, True), _Mig(True, True), _Mig(False, False)])
    CancelStateMigration._never_took(host, state, 3)  # type: ignore[arg-type]
    return warned


def test_every_device_cancel_outran_warns_only_on_an_old_qemu_with_the_signature() -> None:
    warned = _judge("7.2.22", [2, 5])
    assert len(warned) == 1 and "KNOWN QEMU 7.2.22 DEFECT" in warned[0]
    assert "never took in 3 attempts" in warned[0] and "first in QEMU 10.0" in warned[0]
    assert "sent 2 ms after the event" in warned[0]                 # the evidence
    with pytest.raises(TestFail, match="never took in 3 attempts"):
        _judge("10.0.2", [2, 5])                            # fixed QEMU: FAIL
    with pytest.raises(TestFail, match="never took"):
        _judge("7.2.22", [2, 900])                          # not the signature
    with pytest.raises(TestFail, match="never took"):
        _judge("7.2.22", [2, 5], state="active")            # not the device state


class _VM:
    name = "vm1"

    def __init__(self) -> None:
        self.destroyed = False

    def query_status(self) -> str:
        return "running"

    def destroy(self, gracefully: bool = True) -> None:
        self.destroyed = True


def _two_copies(version: str, source: str, state: str = "device") -> tuple[list[str], _VM]:
    """CancelStateMigration.incoming_completed on stand-ins."""
    from types import SimpleNamespace

    from multihost_migration.scenarios.migration_cancel_states import CancelStateMigration
    warned: list[str] = []
    vm = _VM()
    host = SimpleNamespace(
        params={"hosts": ["h1", "h2"], "qemu_pair_versions": f"{version} 10.0.2"},
        hostid="h2", warn=warned.append, env=SimpleNamespace(unregister_vm=lambda n: None))
    host._source_status = lambda m: CancelStateMigration._source_status(host, m)  # type: ignore
    mig = SimpleNamespace(src="h1", mig_id="mig0", params={"cancel_in": state},
                          stats={"vm1": {"status": source}})
    CancelStateMigration.incoming_completed(host, vm, mig, "vm1 on h2")  # type: ignore[arg-type]
    return warned, vm


def test_two_running_copies_warn_only_from_an_old_source_that_said_cancelled() -> None:
    warned, vm = _two_copies("7.2.22", "cancelled")
    assert vm.destroyed and len(warned) == 1
    assert "KNOWN QEMU 7.2.22 DEFECT (migrate_cancel on the device event" in warned[0]
    assert "two copies" in warned[0] and "reported 'cancelled'" in warned[0]
    for version, source, state in (("10.0.2", "cancelled", "device"),   # fixed source
                                   ("7.2.22", "failed", "device"),      # not the signature
                                   ("7.2.22", "cancelled", "active")):  # another state
        with pytest.raises(TestFail, match="completed and the guest runs here"):
            _two_copies(version, source, state)


def _graph(writers: dict[str, list[str]]) -> dict[str, Any]:
    """x-debug-query-block-graph: a block-backend parent per node, its perms."""
    nodes = [{"id": i, "name": name, "type": "block-driver"} for i, name in enumerate(writers)]
    edges = [{"parent": 100 + i, "child": i, "name": "root", "perm": perm,
              "shared-perm": ["consistent-read"]} for i, perm in enumerate(writers.values())]
    return {"nodes": nodes, "edges": edges}


def test_inactive_nodes_from_the_active_flag_or_lost_write_permission() -> None:
    from multihost_migration.scenarios._defects import inactive_nodes, writable_nodes
    before = writable_nodes(_graph({"fmt0": ["write", "consistent-read"],
                                    "cd0": ["consistent-read"]}))
    assert before == {"fmt0"}
    # 7.2 (no `active` flag): inactivation dropped every permission
    assert inactive_nodes(before, _graph({"fmt0": [], "cd0": []}), [{"node-name": "fmt0"}]) \
        == ["fmt0"]
    assert inactive_nodes(before, _graph({"fmt0": ["write"], "cd0": []}), []) == []
    # 10.0: its flag
    assert inactive_nodes(set(), _graph({}), [{"node-name": "fmt0", "active": False},
                                              {"node-name": "f1", "active": True}]) == ["fmt0"]


def test_disks_left_inactive_warn_only_on_an_old_source_with_the_signature() -> None:
    from multihost_migration.scenarios._defects import inactive_after_cancel
    warn, text = inactive_after_cancel("7.2.22", ["fmt0"], "cancelled", "running", "vm1 mig0")
    assert warn and text.startswith("KNOWN QEMU 7.2.22 DEFECT (disks left inactive after a "
                                    "cancel in the device state")
    assert "8c97c5a476d1" in text and "8597af76153a" in text and "first in QEMU 10.0" in text
    assert "block nodes fmt0 inactive" in text and "status 'cancelled', guest 'running'" in text
    assert text.endswith("the verifying migration was not attempted (it would abort QEMU)")
    for version, status, runstate in (("10.0.2", "cancelled", "running"),   # fixed QEMU
                                      (None, "cancelled", "running"),       # not known
                                      ("7.2.22", "failed", "running"),      # not the signature
                                      ("7.2.22", "cancelled", "paused")):
        warn, text = inactive_after_cancel(version, ["fmt0"], status, runstate, "vm1 mig0")
        assert not warn and "block nodes fmt0 inactive" in text and "KNOWN" not in text


class _BlockVM:
    name = "vm1"

    def __init__(self, perm: list[str], active: Any = None) -> None:
        self.perm, self.active = perm, active

    def qmp(self, command: str) -> Any:
        if command == "x-debug-query-block-graph":
            return _graph({"fmt0": self.perm})
        return [{"node-name": "fmt0", **({} if self.active is None else
                                         {"active": self.active})}]

    def query_status(self) -> str:
        return "running"


def _after_cancel(version: str, vm: _BlockVM) -> dict[str, str]:
    """CancelStateMigration._disks_after_cancel on stand-ins: what it recorded."""
    from types import SimpleNamespace

    from multihost_migration.scenarios import migration_cancel_states as mod
    host = SimpleNamespace(params={"hosts": ["h1", "h2"],
                                   "qemu_pair_versions": f"{version} {version}"},
                           inactive={})
    mig = SimpleNamespace(src="h1", mig_id="mig0")
    settle, mod.INACTIVE_SETTLE_S = mod.INACTIVE_SETTLE_S, 0.0  # type: ignore[misc]
    try:
        mod.CancelStateMigration._disks_after_cancel(host, vm, mig, "vm1 mig0",  # type: ignore
                                                     {"fmt0"}, "cancelled")
    finally:
        mod.INACTIVE_SETTLE_S = settle  # type: ignore[misc]
    return host.inactive  # type: ignore[no-any-return]


def test_disks_after_cancel_record_the_defect_or_fail() -> None:
    assert _after_cancel("7.2.22", _BlockVM(["write"])) == {}        # active again: GOOD
    assert _after_cancel("10.0.2", _BlockVM(["write"], True)) == {}
    found = _after_cancel("7.2.22", _BlockVM([]))                       # 7.2: perms dropped
    assert list(found) == ["mig0"] and "KNOWN QEMU 7.2.22 DEFECT" in found["mig0"]
    with pytest.raises(TestFail, match="block nodes fmt0 inactive.*no known defect"):
        _after_cancel("10.0.2", _BlockVM(["write"], False))            # fixed QEMU: FAIL


def test_both_hosts_skip_the_verifying_migration_when_the_source_reports_it() -> None:
    from types import SimpleNamespace

    from multihost_migration.scenarios.migration_cancel_states import CancelStateMigration
    mig = SimpleNamespace(mig_id="mig0")
    for mine, peer, skip in (("KNOWN QEMU 7.2.22 DEFECT (...)", "", True),
                             ("", "KNOWN QEMU 7.2.22 DEFECT (...)", True), ("", "", False)):
        warned: list[str] = []
        host = SimpleNamespace(inactive={"mig0": mine} if mine else {}, warn=warned.append,
                               sync=lambda data, tag, p=peer: {"h1": data, "h2": p})
        assert CancelStateMigration._disks_given_up(host, mig) is skip  # type: ignore
        assert warned == ([mine] if mine else [])


def test_a_completed_source_is_given_time_to_reach_postmigrate() -> None:
    from multihost_migration.scenarios.migration_cancel_states import handed_over

    class _Src:
        def __init__(self, states: list[str]) -> None:
            self.states = states

        def query_status(self) -> str:
            return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    src = _Src(["finish-migrate", "finish-migrate", "postmigrate"])
    handed_over(src, "vm1 mig0")  # type: ignore[arg-type]
    assert src.states == ["postmigrate"]
    stuck = _Src(["finish-migrate"])
    handed_over(stuck, "vm1 mig0", timeout=0.1)  # type: ignore[arg-type]  # bounded


def test_a_destination_that_never_started_the_guest_is_one_copy_not_a_defect() -> None:
    class _Loaded(_VM):
        def query_status(self) -> str:
            return "inmigrate"

        def log_tail(self) -> str:
            return "# cmdline\nqemu: Failed to get \"write\" lock\n"

    from types import SimpleNamespace

    from multihost_migration.scenarios.migration_cancel_states import CancelStateMigration
    warned: list[str] = []
    vm = _Loaded()
    host = SimpleNamespace(params={"hosts": ["h1", "h2"], "qemu_pair_versions": "10.0.2 10.0.2"},
                           hostid="h2", warn=warned.append,
                           env=SimpleNamespace(unregister_vm=lambda n: None))
    host._source_status = lambda m: CancelStateMigration._source_status(host, m)  # type: ignore
    host._never_started = lambda v, e: CancelStateMigration._never_started(host, v, e)  # type: ignore
    mig = SimpleNamespace(src="h1", mig_id="mig0", params={"cancel_in": "device"},
                          stats={"vm1": {"status": "cancelled"}})
    CancelStateMigration.incoming_completed(host, vm, mig, "vm1 on h2")  # type: ignore[arg-type]
    assert vm.destroyed and warned == []
    mig.stats = {"vm1": {"status": "failed"}}              # the source did not cancel it
    with pytest.raises(TestFail, match="completed and the guest runs here"):
        CancelStateMigration.incoming_completed(host, _Loaded(), mig, "vm1 on h2")  # type: ignore
