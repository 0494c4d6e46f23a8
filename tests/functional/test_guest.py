"""The tiny guest under real QEMU (TCG): boot, login, helpers, KVM probe.

One guest is built per session and one QEMU booted per module; every QEMU
is stopped by its context manager, also when a test fails.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from multihost_migration.lab.accel import probe_accel
from multihost_migration.lab.guest import GuestImage, build_guest
from multihost_migration.lab.guest_console import GuestConsole

pytestmark = pytest.mark.qemu
log = logging.getLogger(__name__)

BOOT_TIMEOUT = 90.0     # generous: CI machines are shared; the target is < 10 s


@pytest.fixture(scope="session")
def guest(tmp_path_factory: pytest.TempPathFactory) -> GuestImage:
    out = tmp_path_factory.mktemp("guest")
    start = time.monotonic()
    image = build_guest(out)
    log.info("cold guest build: %.2f s", time.monotonic() - start)
    return image


@pytest.fixture(scope="module")
def heartbeat_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hb") / "heartbeat.log"


@pytest.fixture(scope="module")
def console(guest: GuestImage, heartbeat_file: Path) -> Iterator[GuestConsole]:
    extra = ["-chardev", f"file,id=hb0,path={heartbeat_file}", "-serial", "chardev:hb0"]
    with GuestConsole(guest, accel="tcg", extra=extra) as con:
        start = time.monotonic()
        con.expect(guest.login_prompt_regex, BOOT_TIMEOUT)
        at_login = time.monotonic() - start
        con.send(guest.username + "\n")
        con.expect(guest.password_prompt_regex, 30)
        con.send(guest.password + "\n")
        con.expect(guest.shell_prompt_regex, 30)
        log.info("TCG boot: login: after %.2f s, shell prompt after %.2f s",
                 at_login, time.monotonic() - start)
        yield con


def test_warm_build_is_immediate_and_identical(guest: GuestImage) -> None:
    start = time.monotonic()
    again = build_guest(guest.kernel.parent)
    assert time.monotonic() - start < 2.0
    assert again == guest


def test_login_and_arithmetic(console: GuestConsole) -> None:
    assert console.check("echo $((6*7))", 10).split() == ["42"]


def test_wrong_password_is_refused(console: GuestConsole, guest: GuestImage) -> None:
    console.send("exit\n")
    console.expect(guest.login_prompt_regex, 30)
    console.send(guest.username + "\n")
    console.expect(guest.password_prompt_regex, 10)
    console.send("not-the-password\n")
    console.expect(r"Login incorrect", 30)
    console.expect(guest.login_prompt_regex, 30)
    console.send(guest.username + "\n")
    console.expect(guest.password_prompt_regex, 10)
    console.send(guest.password + "\n")
    console.expect(guest.shell_prompt_regex, 30)


def test_virtio_disk_and_quiet_console(console: GuestConsole) -> None:
    out = console.check("ls /dev/vda && cat /proc/sys/kernel/printk", 10)
    assert "/dev/vda" in out
    assert out.split()[1] == "1"          # console loglevel


def test_memdirty_then_memcheck_ok(console: GuestConsole) -> None:
    console.check("mhm-memdirty 16 > /tmp/memdirty.log 2>&1 &", 10)
    console.check("for i in 1 2 3 4 5 6 7 8 9 10; do grep -q READY /tmp/memdirty.log && "
                  "break; sleep 0.5; done; cat /tmp/memdirty.log", 20)
    out = console.check("sleep 1; mhm-memcheck 20", 40)
    match = re.search(r"MEMCHECK OK pages=4096 passes=(\d+)", out)
    assert match, out
    assert int(match.group(1)) > 0


def test_memcheck_detects_a_corrupted_page(console: GuestConsole) -> None:
    console.check("mhm-memdirty 4 --selftest-corrupt > /tmp/memdirty.log 2>&1 &", 10)
    console.check("for i in 1 2 3 4 5 6 7 8 9 10; do grep -q READY /tmp/memdirty.log && "
                  "break; sleep 0.5; done", 20)
    status, out = console.run("mhm-memcheck 20", 40)
    assert status == 1, out
    assert re.search(r"MEMCHECK BAD pages=1024 bad=\d+ first_bad_page=512", out), out


def test_memcheck_without_memdirty_is_an_error(console: GuestConsole) -> None:
    status, out = console.run("rm -f /run/mhm-memdirty.pid; mhm-memcheck 2", 20)
    assert status == 2 and "MEMCHECK ERROR" in out


def test_disk_pattern_round_trip_and_mismatch(console: GuestConsole) -> None:
    assert "DISK WRITTEN" in console.check("mhm-diskpattern write /dev/vda 1234 8", 60)
    assert console.check("mhm-diskpattern verify /dev/vda 1234 8", 60).strip() == "DISK OK"
    status, out = console.run("mhm-diskpattern verify /dev/vda 999 8", 60)
    assert status == 1 and "DISK BAD offset=0" in out


def test_heartbeat_on_second_serial(console: GuestConsole, heartbeat_file: Path) -> None:
    console.check("mhm-heartbeat /dev/ttyS1 100 & sleep 2; kill $!", 20)
    deadline = time.monotonic() + 5
    lines: list[str] = []
    while time.monotonic() < deadline and len(lines) < 5:
        lines = [l for l in heartbeat_file.read_text().splitlines() if l.startswith("HB ")]
        time.sleep(0.2)
    assert len(lines) >= 5, heartbeat_file.read_text()
    seqs = [int(l.split()[1]) for l in lines]
    stamps = [int(l.split()[2]) for l in lines]
    assert seqs == list(range(len(seqs)))
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


@pytest.mark.slow
def test_boots_on_q35(guest: GuestImage, tmp_path: Path) -> None:
    disk = tmp_path / "q35.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    with GuestConsole(guest, accel="tcg", machine="q35", name="q35", disk=disk) as con:
        con.login(BOOT_TIMEOUT)
        assert "/dev/vda" in con.check("ls /dev/vda", 10)


def test_probe_accel_answers_and_stops_qemu(guest: GuestImage, tmp_path: Path) -> None:
    start = time.monotonic()
    accel = probe_accel(guest, timeout=15.0)
    assert accel in ("kvm", "tcg")
    assert time.monotonic() - start < 15.0 + 15.0
    if not os.path.exists("/dev/kvm"):
        assert accel == "tcg"
    assert not _kvm_qemus_of(guest), "the probe left its QEMU running"


def _kvm_qemus_of(guest: GuestImage) -> list[int]:
    """Pids of QEMUs running this guest's kernel under KVM."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(guest.kernel).encode() in argv and b"kvm" in argv:
            pids.append(int(proc.name))
    return pids
