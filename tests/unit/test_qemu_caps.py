"""server/qemu_caps.py: QEMU's answers parsed, machine types judged; and
preflight reporting them per host (issue #18)."""

from __future__ import annotations

from typing import Any

import pytest

from multihost_migration.remote import SshTarget
from multihost_migration.server import qemu_caps
from multihost_migration.server.preflight import Preflight

# As the two QEMUs print them (shortened).
HELP_72 = """Supported machines are:
microvm              microvm (i386)
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)
pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)
pc-i440fx-7.1        Standard PC (i440FX + PIIX, 1996)
q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)
pc-q35-7.2           Standard PC (Q35 + ICH9, 2009)
pc-q35-7.1           Standard PC (Q35 + ICH9, 2009)
none                 empty machine
"""
HELP_100 = """Supported machines are:
microvm              microvm (i386)
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)
pc-i440fx-10.0       Standard PC (i440FX + PIIX, 1996) (default)
pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996)
q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-10.0)
pc-q35-10.0          Standard PC (Q35 + ICH9, 2009)
pc-q35-9.2           Standard PC (Q35 + ICH9, 2009)
pc-q35-7.2           Standard PC (Q35 + ICH9, 2009)
none                 empty machine
"""
V72 = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright ..."
V100 = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright ..."
OLD, NEW = "/usr/bin/qemu-system-x86_64", "/opt/mhm/qemu-10.0/bin/qemu-system-x86_64"


def info72() -> qemu_caps.QemuInfo:
    return qemu_caps.info_from_output(OLD, V72, HELP_72)


def info100() -> qemu_caps.QemuInfo:
    return qemu_caps.info_from_output(NEW, V100, HELP_100)


def test_version_and_machines_parsed() -> None:
    assert info72().version == "7.2.22" and info100().version == "10.0.2"
    assert qemu_caps.parse_version("QEMU emulator version 8.0 (x)") == "8.0"
    with pytest.raises(ValueError, match="no 'QEMU emulator version'"):
        qemu_caps.parse_version("bash: qemu: command not found")
    names, aliases = qemu_caps.parse_machines(HELP_100)
    assert {"pc-q35-7.2", "q35", "none", "microvm"} <= names
    assert "Supported" not in names
    assert aliases == {"pc": "pc-i440fx-10.0", "q35": "pc-q35-10.0"}


def test_resolve_alias_versioned_and_unknown() -> None:
    assert info72().resolve("q35") == "pc-q35-7.2"
    assert info100().resolve("q35") == "pc-q35-10.0"
    assert info100().resolve("pc-q35-7.2") == "pc-q35-7.2"
    assert info72().resolve("pc-q35-10.0") is None


def test_shared_machines_are_versioned_types_known_to_all() -> None:
    shared = qemu_caps.shared_machines([info72(), info100()])
    assert shared == ["microvm", "none", "pc-i440fx-7.2", "pc-q35-7.2"]
    assert qemu_caps.shared_machines([info100()])[-1] == "pc-q35-10.0"   # 9.2 < 10.0
    assert qemu_caps.shared_machines([]) == []


def test_machine_type_the_destination_lacks_names_host_binary_version() -> None:
    infos = {"h1": info100(), "h2": info72()}
    problems = qemu_caps.machine_problems(
        {"h1": {"vm1": "pc-q35-10.0"}, "h2": {"vm1": "pc-q35-10.0"}}, infos)
    assert problems == [("h2", f"{OLD} (QEMU 7.2.22) has no machine type 'pc-q35-10.0' "
                               "(vm1); pin one both hosts know")]


def test_alias_meaning_different_types_is_a_problem_on_both_hosts() -> None:
    infos = {"h1": info72(), "h2": info100()}
    problems = qemu_caps.machine_problems({"h1": {"vm1": "q35"}, "h2": {"vm1": "q35"}}, infos)
    assert [h for h, _ in problems] == ["h1", "h2"]
    assert "h1: pc-q35-7.2" in problems[0][1] and "h2: pc-q35-10.0" in problems[0][1]
    # pinned to a type both know: nothing to say; same version both sides: alias fine
    assert qemu_caps.machine_problems(
        {"h1": {"vm1": "pc-q35-7.2"}, "h2": {"vm1": "pc-q35-7.2"}}, infos) == []
    assert qemu_caps.machine_problems(
        {"h1": {"vm1": "q35"}, "h2": {"vm1": "q35"}}, {"h1": info72(), "h2": info72()}) == []


def test_report_is_json_ready() -> None:
    out = qemu_caps.report({"h1": info72(), "h2": info100()})
    assert out["hosts"] == {"h1": {"binary": OLD, "version": "7.2.22"},
                            "h2": {"binary": NEW, "version": "10.0.2"}}
    assert "pc-q35-7.2" in out["shared_machine_types"]  # type: ignore[operator]


class TwoQemuPreflight(Preflight):
    """Hosts that answer like the machine: /usr/bin is 7.2, /opt/mhm is 10.0."""

    def __init__(self, tests: Any) -> None:
        super().__init__({h: SshTarget(h) for h in ("h1", "h2")}, tests, "python3", {})

    def _run(self, host: str, command: str, timeout: float = 30.0) -> tuple[int, str]:
        new = command.startswith(NEW)
        if command.endswith("--version"):
            return 0, V100 if new else V72
        if command.endswith("-machine help"):
            return 0, HELP_100 if new else HELP_72
        return 1, "unexpected"


def run_qemu_checks(tests: Any) -> TwoQemuPreflight:
    check = TwoQemuPreflight(tests)
    for host in ("h1", "h2"):
        check._qemu(host)
    check._machine_types()
    return check


CROSS = {"shortname": "cross", "vms": "vm1", "qemu_binary": OLD, "qemu_binary_host2": NEW,
         "machine_type": "pc-q35-7.2"}


def test_preflight_uses_each_hosts_binary_and_reports_versions() -> None:
    check = run_qemu_checks(CROSS)
    assert check.failures == []
    versions = {c.host: c.detail for c in check.checks if c.name == "qemu"}
    assert "7.2.22" in versions["h1"] and "10.0.2" in versions["h2"]
    shared = [c for c in check.checks if c.name == "machines"]
    assert len(shared) == 1 and shared[0].host == "h1,h2"
    assert shared[0].detail.startswith("h1 7.2.22, h2 10.0.2: 4 shared:")
    assert "pc-q35-7.2" in shared[0].detail
    summary = check.qemu_summary(check.tests[0])
    assert summary["hosts"] == {"h1": {"binary": OLD, "version": "7.2.22"},
                                "h2": {"binary": NEW, "version": "10.0.2"}}
    assert check.qemu_summary({"not": "selected"}) == {}


def test_preflight_refuses_a_machine_type_the_destination_lacks() -> None:
    check = run_qemu_checks(dict(CROSS, machine_type="pc-q35-10.0", qemu_binary_host1=NEW,
                                 qemu_binary_host2=OLD))
    [failure] = check.failures
    assert failure.host == "h2" and failure.name == "machine type"
    assert OLD in failure.detail and "7.2.22" in failure.detail
    assert "'pc-q35-10.0'" in failure.detail


def test_preflight_per_vm_machine_type_and_unpinned_alias() -> None:
    check = run_qemu_checks(dict(CROSS, vms="vm1 vm2", machine_type="q35",
                                 machine_type_vm1="pc-q35-7.2"))
    assert {(c.host, c.name) for c in check.failures} == {("h1", "machine type"),
                                                           ("h2", "machine type")}
    assert all("(vm2)" in c.detail for c in check.failures)
