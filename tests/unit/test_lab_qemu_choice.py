"""lab/qemu_choice.py: `mhm lab up --qemu h1=7.2,h2=10.0` parsed and resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihost_migration.errors import LabError
from multihost_migration.lab import qemu_choice
from multihost_migration.lab.config import LabConfig
from multihost_migration.lab.inventory import LabHost

NEW = "/opt/mhm/qemu-10.0/bin/qemu-system-x86_64"


def test_parse_choice() -> None:
    assert qemu_choice.parse_choice("h1=7.2,h2=10.0", ["h1", "h2"]) == {"h1": "7.2",
                                                                        "h2": "10.0"}
    assert qemu_choice.parse_choice(" h2 = 10.0 ", ["h1", "h2"]) == {"h2": "10.0"}
    assert qemu_choice.parse_choice("", ["h1", "h2"]) == {}


@pytest.mark.parametrize("text, words", [
    ("h1", "expected HOST=VERSION"),
    ("h1=", "expected HOST=VERSION"),
    ("h3=10.0", "no lab host 'h3'"),
    ("h1=7.2,h1=10.0", "h1 named twice"),
])
def test_parse_choice_errors(text: str, words: str) -> None:
    with pytest.raises(LabError, match=words):
        qemu_choice.parse_choice(text, ["h1", "h2"])


def test_binary_for_system_and_prefix() -> None:
    prefixes = {"10.0": NEW}
    assert qemu_choice.binary_for("7.2", "7.2.22", prefixes) == qemu_choice.SYSTEM_BINARY
    assert qemu_choice.binary_for("system", "7.2.22", prefixes) == qemu_choice.SYSTEM_BINARY
    assert qemu_choice.binary_for("10.0", "7.2.22", prefixes) == NEW
    # 7.2 must not match 7.22, nor a prefix-less 9.0
    with pytest.raises(LabError, match=r"no QEMU 9.0 on this machine \(have 7.2.22 "
                                       r"\(system\), 10.0\)"):
        qemu_choice.binary_for("9.0", "7.2.22", prefixes)
    with pytest.raises(LabError, match="no QEMU 7.2"):
        qemu_choice.binary_for("7.2", "7.22.1", {})


def test_installed_prefixes(tmp_path: Path) -> None:
    for version in ("10.0", "9.2"):
        binary = tmp_path / f"qemu-{version}" / "bin" / "qemu-system-x86_64"
        binary.parent.mkdir(parents=True)
        binary.write_text("#!/bin/sh\n")
    (tmp_path / "qemu-8.0").mkdir()   # no binary: not installed
    assert qemu_choice.installed(tmp_path) == {
        "10.0": str(tmp_path / "qemu-10.0/bin/qemu-system-x86_64"),
        "9.2": str(tmp_path / "qemu-9.2/bin/qemu-system-x86_64")}


def test_mask_script_binds_or_only_restores() -> None:
    masked = qemu_choice.mask_script(NEW)
    assert "umount /usr/bin/qemu-system-x86_64" in masked
    assert masked.endswith(f"mount --bind {NEW} /usr/bin/qemu-system-x86_64")
    restored = qemu_choice.mask_script(qemu_choice.SYSTEM_BINARY)
    assert "umount" in restored and "--bind" not in restored


def test_version_of_reads_qemus_answer(tmp_path: Path) -> None:
    fake = tmp_path / "qemu"
    fake.write_text("#!/bin/sh\necho 'QEMU emulator version 10.0.2 (Debian x)'\n")
    fake.chmod(0o755)
    assert qemu_choice.version_of(str(fake)) == "10.0.2"
    fake.write_text("#!/bin/sh\necho 'libfoo.so: not found' >&2; exit 127\n")
    with pytest.raises(LabError, match=r"failed \(127\): libfoo.so: not found"):
        qemu_choice.version_of(str(fake))


def test_lab_config_refuses_unknown_host_and_inventory_defaults() -> None:
    with pytest.raises(LabError, match="--qemu names 'h3'"):
        LabConfig(hosts=2, qemu=(("h3", "10.0"),))
    assert LabConfig(qemu=(("h2", "10.0"),)).qemu == (("h2", "10.0"),)
    old = LabHost(name="h1", netns="mhm-h1", address="198.18.0.11")  # an older inventory
    assert old.qemu_binary == "" and old.qemu_version == ""
