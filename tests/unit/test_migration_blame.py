"""Whose failure a local error is (MultihostMigration._blame)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import pytest

from multihost_migration.errors import (MigrationError, PeerFailed, ShellCommandError,
                                        SyncAborted, SyncBarrierTimeout, VMDiedError)
from multihost_migration.migration import MultihostMigration, waited_for
from multihost_migration.rootcause import StallLog
from multihost_migration.verdicts import Interrupted, status_of


class FakeVM:
    """A VM whose QEMU exited (or not) behind our back."""

    def __init__(self, name: str, exitcode: Optional[int]) -> None:
        self.name = name
        self.exitcode = exitcode

    def unexpected_exit(self) -> Optional[VMDiedError]:
        if self.exitcode is None:
            return None
        return VMDiedError(self.name, self.exitcode, "qemu-system-x86_64: terminating", pid=77)


class FakeEnv:
    def __init__(self, vms: list[FakeVM]) -> None:
        self.vms = vms

    def get_all_vms(self) -> list[FakeVM]:
        return self.vms


def host(hostid: str, fired: Optional[SyncAborted],
         vms: Optional[list[FakeVM]] = None) -> MultihostMigration:
    mig = object.__new__(MultihostMigration)   # _blame needs only these
    mig.hostid = hostid
    mig._watch = SimpleNamespace(fired=fired)  # type: ignore[assignment]
    mig.env = FakeEnv(vms or [])  # type: ignore[assignment]
    mig.migrations = []
    mig._stalls = StallLog()
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



# -- root cause first (issue #15) -------------------------------------------------

def test_own_qemu_killed_wins_over_the_peers_abort() -> None:
    """h2's incoming QEMU was killed; h1's 'Broken pipe' abort reached h2 first."""
    peer = SyncAborted("job:mig1", "h1", "MigrationError on h1: Broken pipe")
    with pytest.raises(VMDiedError) as info:
        host("h2", peer, [FakeVM("vm1", -9)])._local_root_cause(peer)
    text = str(info.value)
    assert text.startswith("QEMU of vm1 (pid 77) on h2 killed by signal 9 (SIGKILL)"), text
    assert "then sync session 'job:mig1' aborted by h1: MigrationError on h1: Broken pipe" in text
    assert status_of(info.value) == "FAIL"


def test_a_peers_abort_with_our_qemu_alive_stays_the_peers() -> None:
    peer = SyncAborted("job:mig1", "h1", "MigrationError on h1: Broken pipe")
    host("h2", peer, [FakeVM("vm1", None)])._local_root_cause(peer)   # nothing raised


def test_own_qemu_killed_explains_a_local_symptom() -> None:
    with pytest.raises(VMDiedError) as info:
        host("h1", None, [FakeVM("vm1", -15)])._blame(MigrationError("console gone"))
    assert "killed by signal 15 (SIGTERM)" in str(info.value)
    assert "seen as MigrationError: console gone" in str(info.value)


def test_a_peer_interrupted_makes_this_host_abort_too() -> None:
    peer = SyncAborted("job:watch", "h1", "Interrupted on h1: interrupted: received SIGINT",
                        "interrupted")
    with pytest.raises(Interrupted) as info:
        host("h2", peer)._local_root_cause(peer)
    assert status_of(info.value) == "ABORT" and "h1 was interrupted" in str(info.value)


def test_lost_contact_mid_migration_names_the_stall() -> None:
    peer = SyncAborted("job:mig2", "h2", "lost contact with h2: its sync connection ended "
                                          "before close (recv failed: Connection timed out)", "lost")
    mig = host("h1", peer)
    mig._stalls.progress("vm1 to h2", 1000.0, 6.9)
    mig._stalls._active["vm1 to h2"] = (1000.0, 6.9, mig._stalls._active["vm1 to h2"][2] - 58)
    with pytest.raises(MigrationError) as info:
        mig._blame(MigrationError("migration cancelled"))
    text = str(info.value)
    assert text.startswith("lost contact with h2"), text
    assert "the migration of vm1 to h2 had stalled at 6.9 % for 58 s" in text


def test_a_relayed_report_stops_the_work_and_every_sync_wait() -> None:
    from multihost_migration import relay
    fired: list[SyncAborted] = []
    interrupted: list[SyncAborted] = []
    mig = host("h2", None)
    mig._watch = SimpleNamespace(fired=None, fire=fired.append)  # type: ignore[assignment]
    mig._sync_sessions = [SimpleNamespace(interrupt=interrupted.append)]  # type: ignore[assignment]
    mig._relayed(relay.PeerReport("failed", "h1", "FAIL", "vm1: migration stalled at 6.9 %"))
    assert len(fired) == 1 and isinstance(fired[0], PeerFailed)
    assert str(fired[0]) == "stopped because h1 failed: vm1: migration stalled at 6.9 %"
    assert interrupted == fired
    mig._relayed(relay.PeerReport("failed", "h2", "FAIL", "my own"))   # ignored
    assert len(fired) == 1


def test_a_local_symptom_of_a_peers_interruption_is_an_interruption() -> None:
    peer = SyncAborted("job:watch", "h2", "Interrupted on h2: interrupted: received SIGINT",
                        "interrupted")
    with pytest.raises(Interrupted):
        host("h1", peer)._blame(MigrationError("console gone"))


def test_a_qemu_that_exited_on_its_own_is_a_consequence_not_the_cause() -> None:
    """An incoming QEMU exits with status 1 when the source cancels."""
    peer = SyncAborted("job:mig1", "h1", "MigrationError on h1: not finished after 120s")
    host("h2", peer, [FakeVM("vm1", 1)])._local_root_cause(peer)   # nothing raised
