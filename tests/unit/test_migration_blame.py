"""Whose failure a local error is (MultihostMigration._blame)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import pytest

from multihost_migration.errors import (MigrationError, ShellCommandError, SyncAborted,
                                        SyncBarrierTimeout)
from multihost_migration.migration import MultihostMigration, waited_for


def host(hostid: str, fired: Optional[SyncAborted]) -> MultihostMigration:
    mig = object.__new__(MultihostMigration)   # _blame needs only these
    mig.hostid = hostid
    mig._watch = SimpleNamespace(fired=fired)  # type: ignore[assignment]
    return mig


def gave_up(waiter: str, missing: list[str]) -> SyncAborted:
    timeout = SyncBarrierTimeout("job:mig2", "checked", waiter, 240.0, missing)
    return SyncAborted("job:watch", waiter, f"SyncBarrierTimeout on {waiter}: {timeout}")


def test_a_local_failure_is_the_reason_told_to_the_peers() -> None:
    err = ShellCommandError("mhm-memcheck 60", None, "")
    assert host("h2", None)._blame(err) == f"ShellCommandError on h2: {err}"


def test_a_peer_failure_wins_over_its_local_symptom() -> None:
    peer = SyncAborted("job:watch", "h1", "TestFail on h1: disk pattern differs")
    with pytest.raises(SyncAborted) as info:
        host("h2", peer)._blame(OSError("console client exited"))
    assert info.value is peer


def test_a_peer_that_gave_up_waiting_for_us_gets_what_we_were_doing() -> None:
    local = ShellCommandError("mhm-diskpattern verify /dev/vda 7 8", None, "(no output)")
    with pytest.raises(MigrationError) as info:
        host("h2", gave_up("h1", ["h2"]))._blame(local)
    text = str(info.value)
    assert text.startswith("h1 gave up waiting for h2 (SyncBarrierTimeout on h1: sync "
                           "session 'job:mig2' point 'checked': h1 timed out after 240.0 s "
                           "waiting for h2); h2 was still busy and got ShellCommandError: ")
    assert "mhm-diskpattern verify" in text and info.value.__cause__ is local


def test_a_timeout_waiting_for_another_host_is_the_peer_s_story() -> None:
    peer = gave_up("h1", ["h3"])
    with pytest.raises(SyncAborted):
        host("h2", peer)._blame(OSError("gone"))


def test_waited_for_reads_the_hosts_of_a_barrier_timeout() -> None:
    assert waited_for(str(SyncBarrierTimeout("j", "t", "h1", 1.5, ["h2", "node-3.lab"]))) \
        == ["h2", "node-3.lab"]
    assert waited_for(str(SyncBarrierTimeout("j", "t", "h1", 1.5, None))) == []
    assert waited_for("TestFail on h1: waiting for nothing") == []

