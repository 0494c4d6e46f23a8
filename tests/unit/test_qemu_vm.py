"""VM state guards and migration logic with a fake QMP channel and process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import pytest

from multihost_migration.errors import (ConfigError, GuestError, LoginError, MigrationError,
                                        MigrationFailed, MigrationTimeout, QMPCommandError,
                                        VMLaunchError, VMStateError)
from multihost_migration.qemu import migration as migration_mod
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.migration import MigrateRequest
from multihost_migration.qemu.process import QemuProcess
from multihost_migration.qemu.qmp_channel import QMPChannel
from multihost_migration.qemu.vm import VM, VMState

LOG = logging.getLogger("test")


class FakeChannel(QMPChannel):
    """Answers QMP commands from a script; records what was sent."""

    def __init__(self, migrate_statuses: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__("fake", LOG)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.statuses = list(migrate_statuses)
        self.errors: dict[str, QMPCommandError] = {}

    @property
    def connected(self) -> bool:
        return True

    def execute(self, command: str, arguments: Optional[dict[str, Any]] = None,
                timeout: float = 30.0) -> Any:
        self.sent.append((command, dict(arguments or {})))
        if command in self.errors:
            raise self.errors[command]
        if command == "query-migrate":
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if command == "query-status":
            return {"status": "running", "running": True}
        return {}

    def close(self, timeout: float = 5.0) -> None:
        pass


class FakeProcess(QemuProcess):
    def __init__(self, alive: bool = True) -> None:
        super().__init__("fake", Path("/nonexistent/log"), LOG)
        self.alive = alive

    def is_alive(self) -> bool:
        return self.alive

    def wait(self, timeout: float) -> bool:
        return not self.alive

    def kill(self) -> Optional[int]:
        self.alive = False
        return -9


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migration_mod, "POLL_INTERVAL", 0.01)
    monkeypatch.setattr(migration_mod, "FINAL_STATS_TIMEOUT", 0.05)


def running_vm(tmp_path: Path, channel: FakeChannel, state: VMState = VMState.RUNNING,
               **kwargs: Any) -> VM:
    vm = VM("vm1", {}, tmp_path, **kwargs)
    vm._qmp = channel
    vm._process = FakeProcess()
    vm._state = state
    return vm


def test_constructor_does_no_io(tmp_path: Path) -> None:
    log_dir = tmp_path / "not" / "yet"
    vm = VM("vm1", {"mem": "512"}, log_dir)
    assert not log_dir.exists()
    assert vm.state is VMState.NEW and vm.pid is None and not vm.is_alive()
    assert vm.serial_log_path == log_dir / "vm1-serial.log"
    assert vm.qemu_log_path == log_dir / "vm1-qemu.log"
    vm.destroy()  # nothing to do, idempotent
    assert vm.state is VMState.NEW


@pytest.mark.parametrize("call", [
    lambda vm: vm.migrate(MigrateRequest("h2", 1234)),
    lambda vm: vm.start_incoming(),
    lambda vm: vm.qmp("query-status"),
    lambda vm: vm.wait_for_login(1),
    lambda vm: vm.wait_for_migration_incoming(1),
])
def test_guards_before_create(tmp_path: Path, call: Any) -> None:
    vm = VM("vm1", {}, tmp_path)
    with pytest.raises(VMStateError) as info:
        call(vm)
    assert "new" in str(info.value)


def test_create_twice_is_refused(tmp_path: Path) -> None:
    vm = running_vm(tmp_path, FakeChannel())
    with pytest.raises(VMStateError, match="create"):
        vm.create()


def test_start_incoming_reads_back_port(tmp_path: Path) -> None:
    channel = FakeChannel([{"status": "setup", "socket-address": [
        {"type": "inet", "host": "0.0.0.0", "port": "40411"}]}])
    vm = running_vm(tmp_path, channel, VMState.INCOMING)
    assert vm.start_incoming("tcp", "0.0.0.0", 0) == 40411
    assert ("migrate-incoming", {"uri": "tcp:0.0.0.0:0"}) in channel.sent
    with pytest.raises(VMStateError):
        vm.migrate(MigrateRequest("h2", 40411))


def test_migrate_success_uses_address_of_and_port_mapping(tmp_path: Path) -> None:
    channel = FakeChannel([{"status": "active"}, {"status": "active"},
                           {"status": "completed", "total-time": 900, "downtime": 40,
                            "ram": {"transferred": 1000, "total": 268435456}}])
    vm = running_vm(tmp_path, channel, address_of={"host2": "10.0.0.2"}.__getitem__)
    stats = vm.migrate(MigrateRequest("host2", {"vm1": 5555, "vm2": 6666}, timeout=5))
    assert ("migrate", {"uri": "tcp:10.0.0.2:5555"}) in channel.sent
    assert stats.succeeded and stats.downtime_ms == 40 and stats.total_time_ms == 900
    assert vm.state is VMState.MIGRATED and vm.last_migration == stats


def test_migrate_failure_carries_status_and_reason(tmp_path: Path) -> None:
    channel = FakeChannel([{"status": "setup"},
                           {"status": "failed", "error-desc": "Connection refused"}])
    vm = running_vm(tmp_path, channel)
    with pytest.raises(MigrationError) as info:
        vm.migrate(MigrateRequest("127.0.0.1", 1, timeout=5))
    err = info.value
    assert isinstance(err, MigrationFailed)
    assert err.status == "failed" and err.error_desc == "Connection refused"
    assert err.stats["status"] == "failed"
    assert "Connection refused" in str(err)
    assert vm.state is VMState.RUNNING  # the source keeps running the guest


def test_migrate_timeout_cancels(tmp_path: Path) -> None:
    channel = FakeChannel([{"status": "active", "ram": {"remaining": 99}}])
    vm = running_vm(tmp_path, channel)
    with pytest.raises(MigrationTimeout) as info:
        vm.migrate(MigrateRequest("127.0.0.1", 1, timeout=0.05))
    assert ("migrate_cancel", {}) in channel.sent
    assert info.value.stats["remaining"] == 99
    assert vm.state is VMState.RUNNING


def test_migrate_command_rejected(tmp_path: Path) -> None:
    channel = FakeChannel([{"status": "none"}])
    channel.errors["migrate"] = QMPCommandError("vm1", "migrate", {}, "GenericError",
                                                "There's a migration process in progress")
    vm = running_vm(tmp_path, channel)
    with pytest.raises(MigrationFailed, match="in progress"):
        vm.migrate(MigrateRequest("127.0.0.1", 1))
    assert vm.state is VMState.RUNNING


def test_incoming_side_completes_and_fails(tmp_path: Path) -> None:
    ok = running_vm(tmp_path, FakeChannel([{"status": "active"}, {"status": "completed"}]),
                    VMState.INCOMING)
    assert ok.wait_for_migration_incoming(5) == "completed"
    assert ok.state is VMState.RUNNING
    assert ok.wait_for_migration_incoming(5) == "completed"  # already done

    bad = running_vm(tmp_path, FakeChannel([{"status": "failed"}]), VMState.INCOMING)
    with pytest.raises(MigrationFailed):
        bad.wait_for_migration_incoming(5)
    assert bad.wait_for_migration_incoming(5, check=False) == "failed"


def test_capabilities_and_parameters_use_qmp_names(tmp_path: Path) -> None:
    channel = FakeChannel([{"status": "none"}])
    vm = running_vm(tmp_path, channel)
    vm.set_migration_capabilities({"auto_converge": True, "postcopy-ram": False})
    vm.set_migration_parameters({"downtime_limit": 300, "max-bandwidth": 1 << 30})
    assert channel.sent[0] == ("migrate-set-capabilities", {"capabilities": [
        {"capability": "auto-converge", "state": True},
        {"capability": "postcopy-ram", "state": False}]})
    assert channel.sent[1] == ("migrate-set-parameters",
                               {"downtime-limit": 300, "max-bandwidth": 1 << 30})


def test_destroy_escalates_and_is_idempotent(tmp_path: Path) -> None:
    channel = FakeChannel([{"status": "none"}])
    vm = running_vm(tmp_path, channel)
    process = vm._process
    assert isinstance(process, FakeProcess)
    vm.destroy(gracefully=True, timeout=0.1)
    assert ("quit", {}) in channel.sent  # tried QMP quit first
    assert not process.alive  # then killed: the fake ignores quit
    assert vm.state is VMState.DESTROYED and vm.pid is None
    vm.destroy()
    assert vm.state is VMState.DESTROYED


def test_launch_of_missing_binary(tmp_path: Path) -> None:
    vm = VM("vm1", {"qemu_binary": str(tmp_path / "no-qemu")}, tmp_path)
    with pytest.raises(VMLaunchError) as info:
        vm.create()
    assert str(tmp_path / "no-qemu") in str(info.value)
    assert vm.state is VMState.DESTROYED and not vm.is_alive()


def test_env_registry(tmp_path: Path) -> None:
    env = Env()
    vm = VM("vm1", {}, tmp_path)
    env.register_vm("vm1", vm)
    assert env.get_vm("vm1") is vm and env.get_vm("vm2") is None
    assert list(env) == [vm]
    env.destroy_all()
    assert env.unregister_vm("vm1") is vm and env.get_vm("vm1") is None


# -- login: over the guest network by default, the serial console as fallback --

NIC = {"guest_network": "yes", "job_id": "j1"}


def login_vm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: dict[str, str],
             network_ok: bool = True) -> tuple[VM, list[str]]:
    """A running VM whose two login paths record their use (no guest)."""
    vm = VM("vm1", params, tmp_path)
    vm._qmp, vm._process, vm._state = FakeChannel(), FakeProcess(), VMState.RUNNING
    used: list[str] = []

    def network(timeout: float) -> Any:
        used.append(f"network {timeout:g}")
        if not network_ok:
            raise LoginError("vm1", "connection refused")
        return "net-session"

    def serial(timeout: float) -> Any:
        used.append("serial")
        return "serial-session"

    monkeypatch.setattr(vm, "_network_login", network)
    monkeypatch.setattr(vm, "_serial_login", serial)
    return vm, used


def test_login_over_the_network_when_the_vm_has_a_nic(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    vm, used = login_vm(tmp_path, monkeypatch, NIC)
    assert vm.wait_for_login(100) == "net-session"
    assert used == ["network 30"]          # auto: 30 s for the network, then the console
    vm, used = login_vm(tmp_path, monkeypatch, {})
    assert vm.wait_for_login(100) == "serial-session" and used == ["serial"]


def test_login_falls_back_to_the_serial_console(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    vm, used = login_vm(tmp_path, monkeypatch, NIC, network_ok=False)
    assert vm.wait_for_login(100) == "serial-session"
    assert used == ["network 30", "serial"]
    assert "connection refused" in caplog.text and "serial console instead" in caplog.text


@pytest.mark.parametrize("via, expected", [("serial", ["serial"]),
                                           ("network", ["network 100"])])
def test_login_via_param_and_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      via: str, expected: list[str]) -> None:
    vm, used = login_vm(tmp_path, monkeypatch, {**NIC, "login_via": via})
    vm.wait_for_login(100)
    assert used == expected
    vm, used = login_vm(tmp_path, monkeypatch, NIC)
    vm.wait_for_login(100, via=via)
    assert used == expected


def test_login_via_network_does_not_fall_back(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    vm, used = login_vm(tmp_path, monkeypatch, {**NIC, "login_via": "network"},
                        network_ok=False)
    with pytest.raises(LoginError, match="connection refused"):
        vm.wait_for_login(100)
    assert used == ["network 100"]


def test_login_via_unknown_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="vm1: login_via='ssh'"):
        VM("vm1", {"login_via": "ssh"}, tmp_path)


def test_get_address(tmp_path: Path) -> None:
    vm = VM("vm1", {**NIC, "nic_ip": "198.19.0.150"}, tmp_path)
    assert vm.get_address() == "198.19.0.150"
    with pytest.raises(GuestError, match="no NIC 1"):
        vm.get_address(1)
    with pytest.raises(GuestError, match="vm1: no network address: the VM has no NIC"):
        VM("vm1", {}, tmp_path).get_address()


def test_copy_needs_a_network(tmp_path: Path) -> None:
    vm = running_vm(tmp_path, FakeChannel())
    with pytest.raises(GuestError, match="the VM has no NIC"):
        vm.copy_files_to(str(tmp_path / "x"), "/tmp/x")


def test_network_login_tries_again_until_its_deadline(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A booting guest refuses telnet at first: tried again, no fallback."""
    from multihost_migration.qemu import vm as vm_mod
    vm = VM("vm1", NIC, tmp_path)
    vm._qmp, vm._process, vm._state = FakeChannel(), FakeProcess(), VMState.RUNNING
    attempts: list[float] = []

    class Session:
        address, port, is_open = "198.19.0.1", 23, True

    def fake_login(name: str, address: str, timeout: float, *args: Any, **kwargs: Any) -> Any:
        attempts.append(timeout)
        if len(attempts) < 3:
            raise LoginError("vm1", "console client exited (No route to host)")
        return Session()

    monkeypatch.setattr(vm_mod, "network_login", fake_login)
    monkeypatch.setattr(vm_mod, "NETWORK_LOGIN_RETRY", 0.01)
    assert isinstance(vm.wait_for_login(10), Session)
    assert len(attempts) == 3 and attempts[0] <= 10
    attempts.clear()
    monkeypatch.setattr(vm_mod, "network_login", lambda *a, **k: (_ for _ in ()).throw(
        LoginError("vm1", "refused")))
    with pytest.raises(LoginError, match="refused"):
        vm.wait_for_login(0.05, via="network")
