"""The source-side waiter: samples, postcopy switch, pre-switchover (fake QMP)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import pytest

from multihost_migration.errors import MigrationFailed
from multihost_migration.qemu import migration as migration_mod
from multihost_migration.qemu.link import QemuLink
from multihost_migration.qemu.stats import MigrationStats
from multihost_migration.qemu.vm import VM, VMState
from tests.unit.test_qemu_vm import FakeChannel, FakeProcess


class ScriptedQEMU(FakeChannel):
    """query-migrate follows a script; some commands change what comes next."""

    def __init__(self, statuses: list[dict[str, Any]]) -> None:
        super().__init__(statuses)

    def execute(self, command: str, arguments: Optional[dict[str, Any]] = None,
                timeout: float = 30.0) -> Any:
        if command == "query-migrate-parameters":
            self.sent.append((command, {}))
            return {"downtime-limit": 250}
        if command == "query-status":
            self.sent.append((command, {}))
            return {"status": "postmigrate" if self.statuses[0]["status"] == "completed"
                    else "finish-migrate"}
        return super().execute(command, arguments, timeout)


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migration_mod, "SAMPLE_INTERVAL", 0.01)
    monkeypatch.setattr(migration_mod, "FINAL_STATS_TIMEOUT", 0.05)


def _active(passes: int, transferred: int, status: str = "active") -> dict[str, Any]:
    return {"status": status, "ram": {"transferred": transferred, "remaining": 100,
                                      "total": 1000, "mbps": 8.5,
                                      "dirty-sync-count": passes}}


def _vm(tmp_path: Path, channel: FakeChannel) -> VM:
    vm = VM("vm1", {}, tmp_path)
    vm._qmp, vm._process, vm._state = channel, FakeProcess(), VMState.RUNNING
    return vm


def _waiter(channel: FakeChannel, **kwargs: Any) -> migration_mod.MigrationWaiter:
    """The waiter works on the QEMU's QMP link: no VM involved."""
    link = QemuLink("vm1", channel, FakeProcess(), logging.getLogger("test"))
    waiter = migration_mod.MigrationWaiter(link, sample_interval=0.01, **kwargs)
    waiter.read_downtime_limit()
    return waiter


def test_samples_and_downtime_limit(tmp_path: Path) -> None:
    done = {"status": "completed", "total-time": 90, "ram": {"transferred": 900}}
    stats = _waiter(ScriptedQEMU([_active(1, 10), _active(1, 500), done])).wait_source(5.0)
    assert stats.succeeded and stats.downtime_limit_ms == 250
    assert [s.transferred for s in stats.samples][:2] == [10, 500]
    assert stats.samples[-1].status == "completed"
    assert all(a.t_ms <= b.t_ms for a, b in zip(stats.samples, stats.samples[1:]))
    as_dict = stats.as_dict()
    assert as_dict["samples"][0] == {"t_ms": stats.samples[0].t_ms, "status": "active",
                                     "transferred": 10, "remaining": 100, "total": 1000,
                                     "mbps": 8.5, "passes": 1, "throttle": None}
    assert as_dict["downtime_limit_ms"] == 250


def test_postcopy_after_passes(tmp_path: Path) -> None:
    channel = ScriptedQEMU([_active(1, 10), _active(1, 20), _active(2, 30),
                            _active(2, 40, "postcopy-active"), {"status": "completed"}])
    stats = _waiter(channel, postcopy_after_passes=1).wait_source(5.0)
    assert stats.succeeded
    commands = [c for c, _ in channel.sent]
    assert commands.count("migrate-start-postcopy") == 1
    # issued only once the second pass had begun (dirty-sync-count 2)
    first = commands.index("migrate-start-postcopy")
    assert commands[:first].count("query-migrate") == 3


def test_pre_switchover_hook_then_continue(tmp_path: Path) -> None:
    channel = ScriptedQEMU([_active(1, 10), _active(2, 20, "pre-switchover"),
                            _active(2, 20, "pre-switchover"), {"status": "completed"}])
    seen: list[MigrationStats] = []
    stats = _waiter(channel, on_pre_switchover=seen.append).wait_source(5.0)
    assert stats.succeeded and len(seen) == 1 and seen[0].status == "pre-switchover"
    assert [a for c, a in channel.sent if c == "migrate-continue"] == [
        {"state": "pre-switchover"}]


def test_failing_hook_cancels(tmp_path: Path) -> None:
    channel = ScriptedQEMU([_active(2, 20, "pre-switchover"), {"status": "cancelled"}])

    def hook(stats: MigrationStats) -> None:
        raise RuntimeError("destination not ready")

    with pytest.raises(RuntimeError):
        _waiter(channel, on_pre_switchover=hook).wait_source(5.0)
    commands = [c for c, _ in channel.sent]
    assert "migrate_cancel" in commands and "migrate-continue" not in commands


def test_failure_carries_samples(tmp_path: Path) -> None:
    channel = ScriptedQEMU([_active(1, 10), {"status": "failed", "error-desc": "TLS: bad"}])
    with pytest.raises(MigrationFailed) as info:
        _waiter(channel).wait_source(5.0)
    assert info.value.error_desc == "TLS: bad" and "TLS: bad" in str(info.value)
    assert len(info.value.stats["samples"]) == 2  # type: ignore[arg-type]


def test_cancel_migration_returns_to_running(tmp_path: Path) -> None:
    channel = ScriptedQEMU([_active(1, 10, "cancelling"), {"status": "cancelled"}])
    vm = _vm(tmp_path, channel)
    vm._state = VMState.MIGRATING
    stats = vm.cancel_migration(timeout=5.0)
    assert stats.status == "cancelled" and vm.state is VMState.RUNNING
    assert ("migrate_cancel", {}) in channel.sent


def test_a_cancel_qemu_does_not_carry_out_ends_the_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """7.2 stays "cancelling" while its connect to a dropping port is pending:
    the wait ends CANCELLING_TIMEOUT later, not at the migration's deadline."""
    monkeypatch.setattr(migration_mod, "CANCELLING_TIMEOUT", 0.1)
    channel = ScriptedQEMU([{"status": "setup"}, {"status": "cancelling"}])
    with pytest.raises(MigrationFailed, match="still 'cancelling'") as info:
        _waiter(channel).wait_source(30.0)
    assert info.value.status == "cancelling"
