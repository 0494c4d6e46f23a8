"""Real QEMU (TCG) on this host: launch, console login, commands, shutdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from multihost_migration.errors import ShellCommandError, VMLaunchError
from multihost_migration.qemu import VM, VMState

# QEMU is a dependency (scripts/setup.sh installs it): missing, these fail.
pytestmark = [pytest.mark.qemu]

BOOT_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def booted(guest_params: dict[str, Any],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[VM]:
    vm = VM("vm1", guest_params, tmp_path_factory.mktemp("vm1"))
    try:
        vm.create()
        yield vm
    finally:
        vm.destroy()


def test_boot_login_and_commands(booted: VM) -> None:
    session = booted.wait_for_login(BOOT_TIMEOUT)
    assert session.cmd("uname -s").strip() == "Linux"
    assert session.cmd("echo hello; echo world") == "hello\nworld\n"
    assert session.cmd_status_output("exit_code() { return 3; }; exit_code") == (3, "")
    with pytest.raises(ShellCommandError) as info:
        session.cmd("ls /no-such-file")
    assert info.value.status != 0 and "no-such-file" in info.value.output
    assert "no-such-file" in str(info.value)
    assert session.cmd("test -b /dev/vda && echo disk").strip() == "disk"
    assert booted.query_status() == "running"


def test_second_login_replaces_first(booted: VM) -> None:
    first = booted.wait_for_login(BOOT_TIMEOUT)
    second = booted.wait_for_login(30)
    assert not first.is_open and second.is_open
    assert second.cmd("echo again").strip() == "again"
    # log out: the next login goes through getty's login: prompt again
    second.sendline("exit")
    third = booted.wait_for_login(60)
    assert third.cmd("id -u").strip() == "0"


def test_serial_and_qemu_logs(booted: VM) -> None:
    booted.wait_for_login(BOOT_TIMEOUT).cmd("echo marker-$((6*7))")
    assert "marker-42" in booted.serial_log_path.read_text(errors="replace")
    assert "starting: " in booted.qemu_log_path.read_text()


def test_launch_failure_reports_command_and_output(guest_params: dict[str, Any],
                                                   tmp_path: Path) -> None:
    vm = VM("bad", dict(guest_params, extra_params="-device no-such-device"), tmp_path)
    with pytest.raises(VMLaunchError) as info:
        vm.create()
    err = info.value
    assert "-device" in err.command and "no-such-device" in err.command
    assert err.exitcode == 1
    assert "no-such-device" in err.output and "no-such-device" in str(err)
    assert vm.state is VMState.DESTROYED and not vm.is_alive()


def test_destroy_ungraceful_and_idempotent(guest_params: dict[str, Any],
                                           tmp_path: Path) -> None:
    params = {k: v for k, v in guest_params.items() if k != "image_path"}  # disk is locked
    with VM("vm2", params, tmp_path) as vm:
        vm.create()
        pid = vm.pid
        assert pid is not None and vm.is_alive()
        vm.destroy(gracefully=False)
        assert not vm.is_alive() and vm.pid is None
        assert not Path(f"/proc/{pid}").exists()
        vm.destroy()
    assert vm.state is VMState.DESTROYED
