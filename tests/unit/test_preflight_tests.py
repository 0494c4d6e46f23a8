"""Preflight checks what every selected test needs, each need once."""

from __future__ import annotations

from typing import Any

from multihost_migration.server.preflight import Preflight
from multihost_migration.remote import SshTarget


class RecordingPreflight(Preflight):
    """Every command answers like a healthy host; the commands are kept."""

    def __init__(self, tests: Any, hosts: tuple[str, ...] = ("h1", "h2")) -> None:
        super().__init__({h: SshTarget(h) for h in hosts}, tests, "python3", {})
        self.commands: list[tuple[str, str]] = []

    def _run(self, host: str, command: str, timeout: float = 30.0) -> tuple[int, str]:
        self.commands.append((host, command))
        if "MemAvailable" in command:
            return 0, str(4096 * 1024)
        return 0, "QEMU emulator version 7.2.0" if "--version" in command else ""

    def ran(self, host: str, word: str) -> list[str]:
        return [c for h, c in self.commands if h == host and word in c]


TEST_A = {"shortname": "a", "vms": "vm1", "mem": "256", "accel": "tcg",
          "qemu_binary": "/opt/q1/qemu", "migration_protocol": "tcp",
          "images_base_dir": "/images"}
TEST_B = dict(TEST_A, shortname="b", mem="1024", accel="kvm", migration_protocol="exec",
              qemu_binary_host2="/opt/q2/qemu")
TEST_C = dict(TEST_A, shortname="c")


def test_every_tests_needs_are_checked_each_once() -> None:
    check = RecordingPreflight([TEST_A, TEST_B, TEST_C])
    for host in ("h1", "h2"):
        check._qemu(host)
        check._programs(host)
        check._memory(host)
        check._images_dir(host)
    # h1 runs /opt/q1 in every test; h2 gets its own binary in test b
    assert check.ran("h1", "--version") == ["/opt/q1/qemu --version"]
    assert check.ran("h2", "--version") == ["/opt/q1/qemu --version",
                                            "/opt/q2/qemu --version"]
    assert len(check.ran("h1", "/dev/kvm")) == 1          # test b asks for kvm
    assert len(check.ran("h1", "command -v socat")) == 1  # test b's exec transport
    assert len(check.ran("h1", "command -v qemu-img")) == 1
    assert len(check.ran("h1", "test -d /images")) == 1
    memory = [c for c in check.checks if c.name == "memory" and c.host == "h1"]
    assert len(memory) == 1 and "guests need 2048 MiB" in memory[0].detail  # b's, the largest


def test_one_test_is_checked_as_before() -> None:
    check = RecordingPreflight(TEST_A)
    check._qemu("h1")
    check._programs("h1")
    assert check.ran("h1", "--version") == ["/opt/q1/qemu --version"]
    assert not check.ran("h1", "/dev/kvm") and not check.ran("h1", "socat")


def test_a_broken_vm_config_names_the_tests_it_is_in() -> None:
    broken = {"vms": "vm1", "mem": "lots"}
    check = RecordingPreflight([dict(TEST_A), dict(TEST_A, shortname="x", **broken),
                                dict(TEST_A, shortname="y", **broken)])
    check._params()
    [failure] = check.failures
    assert failure.name == "params" and "(in x, y)" in failure.detail, failure


def test_vm_configs_valid_in_every_test() -> None:
    check = RecordingPreflight([TEST_A, TEST_C])
    check._params()
    assert [(c.name, c.ok) for c in check.checks] == [("params", True)]
    assert "in 2 tests" in check.checks[0].detail
