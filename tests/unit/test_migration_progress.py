"""The migration watchdog (migration._MigrationProgress) without QEMU: a
fake VM answers query-migrate."""

from __future__ import annotations

from typing import Any

import pytest

from multihost_migration import migration
from multihost_migration.migration import _MigrationProgress


class _Clock:
    """migration's time.monotonic, moved by the test: no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(migration, "time", fake)
    return fake


class _FakeVM:
    name = "vm1"

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.cancelled = 0

    def query_migrate(self) -> dict[str, Any]:
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    def cancel_migration(self, wait: bool = True) -> None:
        self.cancelled += 1


def test_a_migration_that_never_leaves_setup_is_cancelled_as_not_connected(
        clock: _Clock) -> None:
    vm = _FakeVM([{"status": "setup"}])
    watch = _MigrationProgress(vm, stall_timeout=0.05)  # type: ignore[arg-type]
    assert watch.poll() is True           # within the stall timeout: waits
    clock.now += 0.08
    assert watch.poll() is False
    assert vm.cancelled == 1 and watch.stalled and watch.in_setup


def test_a_moving_migration_is_not_cancelled_and_a_stall_is_not_setup(clock: _Clock) -> None:
    moving = [{"status": "active", "ram": {"transferred": n, "total": 100, "remaining": 1}}
              for n in (1, 2, 3)]
    vm = _FakeVM(moving + [{"status": "active", "ram": {"transferred": 3}}])
    watch = _MigrationProgress(vm, stall_timeout=0.05)  # type: ignore[arg-type]
    for _ in range(3):
        assert watch.poll() is True
        clock.now += 0.03
    assert vm.cancelled == 0
    clock.now += 0.08
    assert watch.poll() is False
    assert vm.cancelled == 1 and watch.stalled and not watch.in_setup
