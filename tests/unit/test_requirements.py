"""server/requirements.py: requirement params, the probe's output, the plan."""

from __future__ import annotations

from typing import Any

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.server.inventory import form_pairs
from multihost_migration.server.requirements import (
    HostFacts, Requirements, plan, probe_command, unmet)

PROBE_OUT = """\
qemu=QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u16)
vendor=vendor_id : GenuineIntel
flags=flags : fpu vme sse4_2 avx
mem=MemTotal: 8029604 kB
disk=/dev/sda1 102687672 51343836 51343836 50% /var/lib/virt_test/images
"""


def test_probe_output_parsed() -> None:
    facts = HostFacts.parse(PROBE_OUT)
    assert facts.qemu_version == (7, 2, 15)
    assert facts.cpu_vendor == "GenuineIntel"
    assert facts.cpu_flags == {"fpu", "vme", "sse4_2", "avx"}
    assert facts.mem_mib == 7841
    assert facts.free_disk_gib == pytest.approx(48.97, abs=0.01)


def test_probe_command_quotes_the_binary() -> None:
    assert "'/opt/q emu' --version" in probe_command("/opt/q emu")


def test_requirements_read_and_checked() -> None:
    facts = HostFacts.parse(PROBE_OUT)
    ok = Requirements.from_test({"require_qemu_version": ">=7.2, <10",
                                 "require_cpu_vendor": "intel",
                                 "require_cpu_flags": "sse4_2",
                                 "require_mem_mib": "4096", "require_free_disk_gib": "10"})
    assert ok and unmet(ok, facts) == []
    bad = Requirements.from_test({"require_qemu_version": ">=10.0",
                                  "require_cpu_vendor": "amd", "require_cpu_flags": "sse4_2 avx512f",
                                  "require_mem_mib": "16384", "require_free_disk_gib": "100"})
    assert unmet(bad, facts) == [
        "QEMU 7.2.15 is not >=10.0.0", "CPU vendor GenuineIntel is not AuthenticAMD",
        "CPU lacks avx512f", "7841 MiB of memory < 16384", "49.0 GiB free < 100"]
    assert str(bad).startswith("require_qemu_version = >=10.0, require_cpu_vendor = amd")
    assert not Requirements.from_test({"shortname": "x"})
    assert unmet(ok, HostFacts(error="ssh refused")) == ["not probed (ssh refused)"]


@pytest.mark.parametrize("key, value", [("require_qemu_version", "newest"),
                                        ("require_mem_mib", "lots"),
                                        ("require_free_disk_gib", "-1")])
def test_bad_requirement_names_test_key_and_value(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        Requirements.from_test({"shortname": "t1", key: value})
    assert f"test t1: {key} = {value!r}" in str(err.value)


def _facts(flags: str) -> HostFacts:
    return HostFacts((7, 2, 0), "GenuineIntel", frozenset(flags.split()), 8000, 50.0)


def _pair(ms: list[str]) -> list[list[str]]:
    return form_pairs(ms, None, 2)[0]


def test_plan_rounds_per_requirement_set_and_test_na() -> None:
    tests: list[dict[str, Any]] = [
        {"shortname": "plain"},
        {"shortname": "needs_avx", "require_cpu_flags": "avx"},
        {"shortname": "needs_avx2", "require_cpu_flags": "avx"},
        {"shortname": "needs_qemu10", "require_qemu_version": ">=10"},
    ]
    facts = {"h1": _facts("avx"), "h2": _facts(""), "h3": _facts("avx"), "h4": _facts("")}
    result = plan(tests, [["h1", "h2"], ["h3", "h4"]], facts, _pair)
    assert [(r.tests, r.pairs) for r in result.rounds] == [
        (["plain"], [["h1", "h2"], ["h3", "h4"]]),
        (["needs_avx", "needs_avx2"], [["h1", "h3"]])]
    assert [name for name, _ in result.not_applicable] == ["needs_qemu10"]
    reason = result.not_applicable[0][1]
    assert reason.startswith("no pair of hosts meets require_qemu_version = >=10")
    assert "h1: QEMU 7.2.0 is not >=10.0.0" in reason


def test_plan_keeps_qualifying_pairs() -> None:
    facts = {h: _facts("avx") for h in ("h1", "h2", "h3", "h4")}
    result = plan([{"shortname": "t", "require_cpu_flags": "avx"}],
                  [["h1", "h4"], ["h2", "h3"]], facts, _pair)
    assert result.rounds[0].pairs == [["h1", "h4"], ["h2", "h3"]]


def test_a_selection_error_is_left_to_the_server_test(tmp_path: Any) -> None:
    from types import SimpleNamespace

    from multihost_migration.server.requirements import plan_for_job
    cfg = tmp_path / "t.cfg"
    cfg.write_text("variants:\n    - a:\n")
    job = SimpleNamespace(options=SimpleNamespace(cfg=cfg), control=str(tmp_path / "c.srv"))
    result = plan_for_job(job, [["h1", "h2"]], ["only nothing_matches"], _pair)
    assert [(r.tests, r.pairs) for r in result.rounds] == [([], [["h1", "h2"]])]
    result = plan_for_job(job, [["h1", "h2"]], [], _pair)     # no requirements: no probe
    assert [(r.tests, r.pairs) for r in result.rounds] == [([], [["h1", "h2"]])]
