"""Real local migrations between two QEMUs on this host (TCG, 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from multihost_migration.errors import MigrationError, MigrationFailed, VMLaunchError
from multihost_migration.qemu import VM, VMState
from multihost_migration.qemu.migration import MigrateRequest
from multihost_migration.qemu.transport import Transport

# QEMU is a dependency (scripts/setup.sh installs it): missing, these fail.
pytestmark = [pytest.mark.qemu]

BOOT_TIMEOUT = 120.0
LOOPBACK = "127.0.0.1"


@pytest.fixture
def vms(guest_params: dict[str, Any], tmp_path: Path) -> Iterator[tuple[VM, VM]]:
    """A source and a not-yet-started destination; both destroyed afterwards."""
    src = VM("vm1", guest_params, tmp_path / "src", address_of={"host2": LOOPBACK}.get)
    dst = VM("vm1", guest_params, tmp_path / "dst")
    try:
        yield src, dst
    finally:
        try:
            src.destroy(gracefully=False)
        finally:
            dst.destroy(gracefully=False)


def test_tcp_migration_keeps_workload_running(vms: tuple[VM, VM], tmp_path: Path) -> None:
    src, dst = vms
    src.create()
    session = src.wait_for_login(BOOT_TIMEOUT)
    session.cmd("dd if=/dev/zero of=/dev/null bs=64k count=999999999 "
                ">/dev/null 2>&1 &")
    dd_pid = session.cmd("pidof dd").strip()
    assert dd_pid

    dst.create(incoming=True)
    port = dst.start_incoming("tcp", LOOPBACK, 0)
    assert port > 0
    stats = src.migrate(MigrateRequest("host2", {"vm1": port}, timeout=120))
    assert dst.wait_for_migration_incoming(60) == "completed"

    assert stats.status == "completed" and stats.error_desc is None
    assert stats.total_time_ms is not None and stats.total_time_ms > 0
    assert stats.downtime_ms is not None and stats.downtime_ms >= 0
    assert stats.transferred is not None and stats.transferred > 0
    assert stats.total is not None and stats.total >= 256 << 20
    (tmp_path / "stats.json").write_text(json.dumps(stats.as_dict()))

    assert src.state is VMState.MIGRATED and src.query_status() == "postmigrate"
    src.destroy()
    assert not src.is_alive()

    assert dst.state is VMState.RUNNING and dst.query_status() == "running"
    dst_session = dst.wait_for_login(30)  # the source's shell continues here
    assert dst_session.cmd("pidof dd").strip() == dd_pid
    dst_session.cmd(f"kill -0 {dd_pid}")


def test_destination_launch_failure(vms: tuple[VM, VM], guest_params: dict[str, Any],
                                    tmp_path: Path) -> None:
    bad = VM("vm1", dict(guest_params, extra_params="-object no-such-object,id=x"),
             tmp_path / "bad")
    with pytest.raises(VMLaunchError) as info:
        bad.create(incoming=True)
    assert "-incoming" in info.value.command and "defer" in info.value.command
    assert "no-such-object" in str(info.value)
    assert not bad.is_alive()


def test_destination_killed_before_migration(vms: tuple[VM, VM]) -> None:
    src, dst = vms
    src.create()
    session = src.wait_for_login(BOOT_TIMEOUT)
    dst.create(incoming=True)
    port = dst.start_incoming("tcp", LOOPBACK, 0)
    dst.destroy(gracefully=False)

    with pytest.raises(MigrationError) as info:
        src.migrate(MigrateRequest(LOOPBACK, port, timeout=60))
    err = info.value
    assert isinstance(err, MigrationFailed) and err.status == "failed"
    assert err.error_desc and "refused" in err.error_desc.lower()
    assert "refused" in str(err).lower()

    assert src.state is VMState.RUNNING and src.is_alive()
    assert src.query_status() == "running"
    assert session.cmd("echo still-here").strip() == "still-here"


def _start_memdirty(session: Any, mib: int) -> None:
    session.cmd(f"mhm-memdirty {mib} > /tmp/memdirty.log 2>&1 &")
    for _ in range(120):
        if session.cmd_status_output("grep -q 'MEMDIRTY READY' /tmp/memdirty.log")[0] == 0:
            return
        session.cmd("sleep 0.5")
    raise AssertionError(session.cmd_output("cat /tmp/memdirty.log"))


@pytest.mark.slow
def test_every_transport_keeps_guest_memory_intact(guest_params: dict[str, Any],
                                                   tmp_path: Path) -> None:
    """One guest hops tcp -> unix -> exec -> fd -> tcp+postcopy; memdirty's
    invariant is verified inside the guest at the end."""
    hops = ["tcp", "unix", "exec", "fd", "postcopy"]
    created: list[VM] = []
    results: dict[str, dict[str, Any]] = {}
    try:
        src = VM("vm1", guest_params, tmp_path / "hop0")
        created.append(src)
        src.create()
        _start_memdirty(src.wait_for_login(BOOT_TIMEOUT), 16)
        for index, hop in enumerate(hops, start=1):
            dst = VM("vm1", guest_params, tmp_path / f"hop{index}")
            created.append(dst)
            dst.create(incoming=True)
            results[hop] = _hop(src, dst, hop).as_dict()
            assert dst.wait_for_migration_incoming(120) == "completed"
            src.destroy()
            src = dst
        output = src.wait_for_login(60).cmd("mhm-memcheck 60", timeout=90)
        assert "MEMCHECK OK" in output
        (tmp_path / "stats.json").write_text(json.dumps(results, indent=1))
    finally:
        for vm in created:
            vm.destroy(gracefully=False)


def _hop(src: VM, dst: VM, hop: str) -> Any:
    if hop == "unix":
        dst.start_incoming("unix")
        return src.migrate(MigrateRequest("", 0, Transport.UNIX, timeout=120,
                                          target=dst.incoming_target))
    if hop == "exec":
        port = dst.start_incoming("exec", LOOPBACK, 0)
        return src.migrate(MigrateRequest(LOOPBACK, port, Transport.EXEC, timeout=120))
    if hop == "fd":
        import socket
        out_sock, in_sock = socket.socketpair()
        with out_sock, in_sock:
            dst.start_incoming("fd", fd=in_sock.fileno())
            return src.migrate(MigrateRequest("", 0, Transport.FD, timeout=120,
                                              fd=out_sock.fileno()))
    postcopy = hop == "postcopy"
    if postcopy:
        for vm in (src, dst):
            vm.set_migration_capabilities({"postcopy-ram": True})
        src.set_migration_parameters({"max-bandwidth": 32 << 20})  # stay in precopy a bit
    port = dst.start_incoming("tcp", LOOPBACK, 0)
    stats = src.migrate(MigrateRequest(LOOPBACK, port, Transport.TCP, timeout=120,
                                       postcopy_after=0.5 if postcopy else None))
    return stats
