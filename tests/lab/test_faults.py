"""Faults from outside the suite: interruptions, dead hosts, bad input.

Each test asserts what the user sees (status.log, exit status, message) and
what is left behind (no QEMU, no client job on any lab host).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from multihost_migration.lab import faults, netns
from multihost_migration.lab.demo import ROOT, autotest_remote_argv
from multihost_migration.lab.inventory import Inventory
from multihost_migration.lab.lab import lab_qemu_pids as qemu_pids
from multihost_migration.status import parse
from tests.lab.test_autotest_remote import TEST, guest_lab, run_autotest_remote  # noqa: F401


def lab_leftovers(inv: Inventory) -> list[str]:
    """QEMUs and client jobs still running on any lab host."""
    left = []
    for host in inv.hosts:
        for pattern in ("qemu-system", "multihost_migration.client"):
            left += [f"{host.name}:{pid}:{pattern}" for pid in faults.processes(inv, host.name,
                                                                                   pattern)]
    return left


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def incoming_qemu_on(inv: Inventory, host: str) -> bool:
    return any("-incoming" in open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
               for pid in faults.processes(inv, host, "qemu-system"))


@pytest.fixture
def popen_run(guest_lab: Inventory, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:  # noqa: F811
    procs: list[subprocess.Popen[str]] = []

    def start(*control_args: str) -> subprocess.Popen[str]:
        argv = autotest_remote_argv(guest_lab, tmp_path / "r", ROOT / "control.srv",
                                    list(control_args))
        argv[argv.index(f"accel={guest_lab.accel}")] = "accel=tcg"
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


PHASES: dict[str, Callable[[Inventory, Path], bool]] = {
    "preflight": lambda inv, results: (results / "status.log").exists(),
    "boot": lambda inv, results: bool(faults.processes(inv, "h1", "qemu-system-x86_64 -name")),
    "migration": lambda inv, results: incoming_qemu_on(inv, "h2"),
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", list(PHASES))
def test_interrupted_controller_leaves_nothing_and_says_abort(
        guest_lab: Inventory, popen_run: Callable[..., subprocess.Popen[str]],  # noqa: F811
        tmp_path: Path, phase: str, sig: signal.Signals) -> None:
    proc = popen_run()
    assert wait_until(lambda: PHASES[phase](guest_lab, tmp_path / "r"), 60), \
        f"phase {phase} never came"
    if phase == "migration":
        time.sleep(0.5)
    sent = time.monotonic()
    os.kill(proc.pid, sig)
    assert wait_until(lambda: not lab_leftovers(guest_lab), 10), \
        f"left running 10 s after {sig.name}: {lab_leftovers(guest_lab)}"
    out, _ = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 30
    assert proc.returncode == 130, out[-2000:]
    entries = parse((tmp_path / "r" / "status.log").read_text())
    assert entries[-1].status == "END ABORT", out[-2000:]
    # every host that ran says ABORT, with the interruption as the reason
    hosts = [e for e in entries if e.subdir.endswith(("/h1", "/h2")) and e.status in
             ("GOOD", "WARN", "FAIL", "ERROR", "ABORT", "TEST_NA")]
    for entry in hosts:
        assert entry.status == "ABORT", hosts
        assert "interrupted" in entry.reason and "Traceback" not in entry.reason, hosts
    assert qemu_pids() == []


def test_master_client_dies_and_the_peer_aborts_at_once(
        guest_lab: Inventory, tmp_path: Path,  # noqa: F811
        popen_run: Callable[..., subprocess.Popen[str]]) -> None:
    proc = popen_run()
    assert wait_until(lambda: incoming_qemu_on(guest_lab, "h2"), 60)
    killed = faults.kill(guest_lab, "h1", "multihost_migration.client")
    assert killed
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    status = (tmp_path / "r" / "status.log").read_text()
    h2 = [e for e in parse(status) if e.subdir == f"{TEST}/h2" and e.status == "FAIL"]
    assert h2 and "sync server" in h2[0].reason, status
    assert wait_until(lambda: not lab_leftovers(guest_lab), 10), lab_leftovers(guest_lab)
    shared = Path(guest_lab.shared_paths["images"].lab_path)
    assert not list(shared.glob("mhm-disk-*")), "the killed master's disk was left behind"


def test_unreachable_host_is_a_clear_error_before_anything_starts(
        guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    argv = autotest_remote_argv(guest_lab, tmp_path / "r", ROOT / "control.srv", [],
                                hosts=["h1", "198.18.0.99"])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2     # ERROR: the test could not run
    junit = (tmp_path / "r" / "junit.xml").read_text()
    assert 'name="198.18.0.99: preflight"' in junit and "<error" in junit
    status = (tmp_path / "r" / "status.log").read_text()
    assert "preflight failed: 198.18.0.99 ssh:" in status
    assert "cannot connect" in status or "timed out" in status
    assert TEST not in status, "a test started despite the dead host"


@pytest.mark.parametrize("option, message", [
    ("key", "authentication failed"),
    ("known_hosts", "unknown host key"),
])
def test_refused_key_and_unknown_host_key(guest_lab: Inventory, tmp_path: Path,  # noqa: F811
                                          option: str, message: str) -> None:
    argv = autotest_remote_argv(guest_lab, tmp_path / "r", ROOT / "control.srv", [])
    if option == "key":
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / "other")], check=True)
        argv[argv.index(guest_lab.ssh.key)] = str(tmp_path / "other")
    else:
        (tmp_path / "known_hosts").write_text("")
        argv[argv.index(guest_lab.ssh.known_hosts)] = str(tmp_path / "known_hosts")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    status = (tmp_path / "r" / "status.log").read_text()
    assert "preflight failed" in status and message in status
    assert TEST not in status


@pytest.mark.parametrize("args, message", [
    (("type=no_such_scenario",), "unknown test type 'no_such_scenario'"),
    (("mem=lots",), "mem='lots' is not an integer"),
])
def test_bad_params_are_errors_naming_the_parameter(guest_lab: Inventory, tmp_path: Path,  # noqa: F811
                                                    args: tuple[str, ...], message: str) -> None:
    proc = run_autotest_remote(guest_lab, tmp_path / "r", *args, timeout=120)
    assert proc.returncode == 2     # configuration: ERROR, never FAIL
    entries = parse((tmp_path / "r" / "status.log").read_text())
    assert not [e for e in entries if e.status == "FAIL"], entries
    verdicts = [e for e in entries if e.status == "ERROR"]
    assert verdicts and message in verdicts[0].reason, verdicts
    assert qemu_pids() == []


def test_cfg_syntax_error_names_file_and_line(guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    cfg = tmp_path / "broken.cfg"
    cfg.write_text("variants:\n    - a:\n        x = 1\n    - b\n")   # no ':' after b
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)))
    assert proc.returncode != 0
    assert f"{cfg}:4:" in proc.stdout + proc.stderr


def test_duplicate_hosts_leave_one_machine_and_say_so(guest_lab: Inventory,  # noqa: F811
                                                      tmp_path: Path) -> None:
    argv = autotest_remote_argv(guest_lab, tmp_path / "r", ROOT / "control.srv", [],
                                hosts=["h1", "h1"])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    status = (tmp_path / "r" / "status.log").read_text()
    assert "needs at least 2 machines" in status and "got 1: h1" in status


def test_network_faults_only_touch_lab_namespaces(guest_lab: Inventory) -> None:  # noqa: F811
    before = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    faults.partition(guest_lab, "h1", "h2")
    try:
        with netns.entered("mhm-h1"):
            s = socket.socket()
            s.settimeout(1.0)
            with pytest.raises(OSError):
                s.connect((guest_lab.host("h2").address, 22))
            s.close()
        assert subprocess.run(["nft", "list", "ruleset"], capture_output=True,
                              text=True).stdout == before
    finally:
        faults.heal(guest_lab)
    with netns.entered("mhm-h1"):
        socket.create_connection((guest_lab.host("h2").address, 22), timeout=3).close()


def _preflight_failure(inv: Inventory, tmp_path: Path, *args: str) -> str:
    proc = run_autotest_remote(inv, tmp_path / "r", *args, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:]
    status = (tmp_path / "r" / "status.log").read_text()
    assert not [e for e in parse(status) if e.status == "START" and e.subdir == TEST], \
        "a test started despite the preflight failure"
    fails = [e.reason for e in parse(status) if e.status == "ERROR"]
    assert fails and fails[0].startswith("preflight failed"), status
    return fails[0]


def test_preflight_finds_a_firewall_between_the_hosts(guest_lab: Inventory,  # noqa: F811
                                                      tmp_path: Path) -> None:
    faults.partition(guest_lab, "h1", "h2")
    try:
        reason = _preflight_failure(guest_lab, tmp_path)
    finally:
        faults.heal(guest_lab)
    assert "tcp: -> h2" in reason and "blocked" in reason


def test_preflight_finds_storage_that_is_not_shared(guest_lab: Inventory,  # noqa: F811
                                                    tmp_path: Path) -> None:
    images = "/var/lib/virt_test/images"
    mhm = [sys.executable, "-m", "multihost_migration.lab.cli", "lab", "exec", "h2", "--"]
    subprocess.run(mhm + ["mount", "-t", "tmpfs", "local-only", images], check=True, timeout=30)
    try:
        reason = _preflight_failure(guest_lab, tmp_path)
    finally:
        subprocess.run(mhm + ["umount", images], check=True, timeout=30)
    assert "h2 shared: does not see the file h1 wrote" in reason
    assert "the storage is not shared" in reason


def test_preflight_finds_a_missing_qemu(guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    reason = _preflight_failure(guest_lab, tmp_path, "qemu_binary=/opt/none/qemu-system-x86_64")
    assert "qemu: /opt/none/qemu-system-x86_64 does not run" in reason
