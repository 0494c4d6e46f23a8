"""The controller's relay and host watch (server/hostwatch.py)."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from multihost_migration import relay
from multihost_migration.remote import CommandResult, RemoteHost, SshTarget
from multihost_migration.server import hostwatch
from multihost_migration.server.hostwatch import HostWatch, Relay, sweep_stale_workdirs
from multihost_migration.status import format_line


def test_a_failing_verdict_line_is_relayed_once_to_the_others() -> None:
    box = Relay(["h1", "h2", "h3"])
    box.watch_line("h1", format_line(1, "START", "t/h1", "t"))
    box.watch_line("h1", format_line(2, "FAIL", "t/h1", "t", "deeper: not the verdict"))
    box.watch_line("h1", format_line(1, "FAIL", "t/h1", "t", "vm1: stalled at 6.9 %"))
    box.watch_line("h1", format_line(1, "FAIL", "t/h1", "t", "again"))
    assert box.outboxes["h1"].empty()
    for host in ("h2", "h3"):
        line = box.outboxes[host].get_nowait()
        assert relay.decode(line) == relay.PeerReport("failed", "h1", "FAIL",
                                                      "vm1: stalled at 6.9 %")
        assert box.outboxes[host].empty()


def test_good_and_abort_are_not_relayed() -> None:
    box = Relay(["h1", "h2"])
    box.watch_line("h1", format_line(1, "GOOD", "t/h1", "t", "completed"))
    box.watch_line("h1", format_line(1, "ABORT", "t/h1", "t", "interrupted"))
    assert box.outboxes["h2"].empty()


class SilentHost(RemoteHost):
    """A host whose sshd answers keepalives until `frozen` is set."""

    def __init__(self) -> None:
        super().__init__(SshTarget("h2"))
        self.frozen = threading.Event()

    def ping(self, timeout: float = 10.0) -> bool:
        if self.frozen.is_set():
            time.sleep(min(timeout, 0.05))
            return False
        return True


def test_a_silent_host_is_declared_unresponsive_with_its_last_phase() -> None:
    import pytest
    mp = pytest.MonkeyPatch()
    mp.setattr(hostwatch, "PING_INTERVAL", 0.05)
    try:
        host = SilentHost()
        declared: list[str] = []
        watch = HostWatch("h2", host, timeout=0.5, on_unresponsive=declared.append,
                          phase=lambda: "migrating vm1 45.0")
        with watch:
            time.sleep(0.8)
            assert not declared, "declared while answering keepalives"
            host.frozen.set()
            deadline = time.monotonic() + 5
            while not declared and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        mp.undo()
    assert declared and declared[0] == watch.declared
    assert declared[0].startswith("host h2 unresponsive since ")
    assert "(last phase: migrating vm1 45.0)" in declared[0]


class LocalShellHost(RemoteHost):
    """This machine's shell as the 'host': the real flock, pkill and rm."""

    def __init__(self) -> None:
        super().__init__(SshTarget("localhost"))

    def run(self, command: str, timeout: float = 60.0, check: bool = True,
            on_line: Optional[Callable[[str], None]] = None, get_pty: bool = False,
            cancel: Optional[threading.Event] = None,
            outbox: object = None) -> CommandResult:
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                              timeout=timeout)
        return CommandResult(command, proc.returncode, proc.stdout, proc.stderr, 0.0)


def _workdir(host: str, tag: str, age: float) -> Path:
    path = Path(f"/tmp/mhm-job{tag}-{host}.{secrets.token_hex(4)}")
    path.mkdir(mode=0o700)
    params = path / "params.json"
    params.write_text("{}")
    old = time.time() - age
    os.utime(params, (old, old))
    return path


def test_the_sweep_takes_only_workdirs_of_jobs_that_are_gone() -> None:
    host = f"unit{secrets.token_hex(3)}"
    stale = _workdir(host, "stale", 120)
    running = _workdir(host, "running", 120)
    starting = _workdir(host, "starting", 1)
    holder = os.open(running / "lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                 f"{stale}/qemu.sock"])
    try:
        removed = sweep_stale_workdirs(LocalShellHost(), host)
        assert removed == [str(stale)]
        assert not stale.exists() and running.is_dir() and starting.is_dir()
        assert leftover.wait(10) == -9, "the stale job's process was not killed"
    finally:
        leftover.kill()
        os.close(holder)
        for path in (stale, running, starting):
            shutil.rmtree(path, ignore_errors=True)
