"""__str__ of the errors the QEMU engine raises carries the evidence."""

from __future__ import annotations

from multihost_migration.errors import (MigrationError, MigrationFailed, MigrationTimeout,
                                        QMPCommandError, QMPError, VMDiedError, VMError,
                                        VMStateError)


def test_vm_state_error() -> None:
    err = VMStateError("vm1", "migrate", "incoming", ["running"])
    assert isinstance(err, VMError)
    assert str(err) == "vm1: migrate() not allowed in state incoming (allowed: running)"


def test_vm_died_error() -> None:
    err = VMDiedError("vm1", -9, "line1\nqemu: killed", pid=4242)
    assert "QEMU of vm1 (pid 4242) killed by signal 9 (SIGKILL)" in str(err)
    assert "qemu: killed" in str(err)
    assert "exited with status 1" in str(VMDiedError("vm1", 1, ""))


def test_qmp_command_error() -> None:
    err = QMPCommandError("vm1", "migrate", {"uri": "x:"}, "GenericError", "bad uri")
    assert isinstance(err, QMPError)
    assert str(err) == "vm1: QMP migrate {'uri': 'x:'} failed: GenericError: bad uri"


def test_migration_failed_and_timeout() -> None:
    err = MigrationFailed("vm1", "migration failed", status="failed",
                          error_desc="Connection refused", stats={"status": "failed"},
                          log_tail="qemu-system-x86_64: load of migration failed")
    assert isinstance(err, MigrationError)
    text = str(err)
    assert "vm1" in text and "status failed" in text and "Connection refused" in text
    assert "load of migration failed" in text
    timeout = MigrationTimeout("vm1", "not finished after 5s", status="active")
    assert isinstance(timeout, MigrationFailed) and "active" in str(timeout)
