"""Unit tests of the tiny guest builder: archive, inputs, hashing, rebuilds.

No QEMU emulator runs here; the end-to-end build uses the real busybox, gcc
and qemu-img on a fake kernel and fake modules so it stays fast.
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import stat
import struct
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from multihost_migration.errors import LabError
from multihost_migration.lab import guest as guest_mod
from multihost_migration.lab import guest_sources
from multihost_migration.lab import accel
from multihost_migration.lab.accel import cached_probe, kvm_device_usable, probe_accel_reason
from multihost_migration.lab.guest import GuestImage, build_guest, is_current
from multihost_migration.lab.guest_initramfs import Entry, gzip_reproducible, write_cpio
from multihost_migration.lab.guest_kernel import extract_pvh_vmlinux, has_pvh_entry
from multihost_migration.lab.guest_sources import (
    BuildSources, find_inputs, find_kernel, hash_inputs, parse_modules_dep, resolve_modules,
)


def parse_newc(data: bytes) -> List[Tuple[str, Dict[str, int], bytes]]:
    """(name, header fields, data) of each member of a newc archive."""
    names = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor",
             "devminor", "rdevmajor", "rdevminor", "namesize", "check")
    members: List[Tuple[str, Dict[str, int], bytes]] = []
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        fields = {n: int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i, n in enumerate(names)}
        name_start = pos + 110
        name = data[name_start:name_start + fields["namesize"] - 1].decode()
        body = name_start + fields["namesize"]
        body += -body % 4
        content = data[body:body + fields["filesize"]]
        pos = body + fields["filesize"]
        pos += -pos % 4
        if name == "TRAILER!!!":
            return members
        members.append((name, fields, content))


def test_cpio_is_sorted_reproducible_and_owned_by_root() -> None:
    entries = {"etc/b": Entry.file(b"hello"), "etc": Entry.directory(),
               "dev/console": Entry.chardev(5, 1), "bin/sh": Entry.symlink("/bin/busybox"),
               "bin": Entry.directory(), "dev": Entry.directory()}
    archive = write_cpio(entries)
    assert archive == write_cpio(dict(reversed(list(entries.items()))))
    members = parse_newc(archive)
    assert [m[0] for m in members] == sorted(entries)
    by_name = {name: (fields, body) for name, fields, body in members}
    assert all(f["mtime"] == 0 and f["uid"] == 0 and f["gid"] == 0 for f, _ in by_name.values())
    console, _ = by_name["dev/console"]
    assert stat.S_ISCHR(console["mode"]) and (console["rdevmajor"], console["rdevminor"]) == (5, 1)
    assert by_name["bin/sh"][1] == b"/bin/busybox"
    assert by_name["etc/b"][1] == b"hello"


def test_cpio_is_readable_by_the_cpio_tool() -> None:
    archive = write_cpio({"etc": Entry.directory(), "etc/x": Entry.file(b"abc")})
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=archive, capture_output=True,
                             check=True).stdout.decode().split()
    assert listing == ["etc", "etc/x"]


def test_gzip_has_no_timestamp() -> None:
    first = gzip_reproducible(b"x" * 1000)
    assert first == gzip_reproducible(b"x" * 1000)
    assert first[4:8] == b"\0\0\0\0"  # MTIME field


def test_find_kernel_picks_newest_version(tmp_path: Path) -> None:
    for version in ("6.1.0-9-amd64", "6.1.0-10-amd64", "5.10.0-30-amd64"):
        (tmp_path / f"vmlinuz-{version}").write_bytes(b"k")
    assert find_kernel(tmp_path) == (tmp_path / "vmlinuz-6.1.0-10-amd64", "6.1.0-10-amd64")


def test_missing_kernel_names_path_and_package(tmp_path: Path) -> None:
    with pytest.raises(LabError) as info:
        find_kernel(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "linux-image-amd64" in message
    assert "\n" not in message


DEP = """\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
"""


def test_modules_resolve_dependencies_first() -> None:
    order = resolve_modules(parse_modules_dep(DEP), ["virtio_pci", "virtio_blk"])
    assert order == ["kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                     "kernel/drivers/virtio/virtio_pci.ko",
                     "kernel/drivers/block/virtio_blk.ko.xz"]


def test_missing_module_and_cycle_are_errors() -> None:
    with pytest.raises(LabError, match="virtio_net"):
        resolve_modules(parse_modules_dep(DEP), ["virtio_net"])
    with pytest.raises(LabError, match="cycle"):
        resolve_modules({"a.ko": ["b.ko"], "b.ko": ["a.ko"]}, ["a"])


def _elf_with_notes(notes: List[Tuple[bytes, int]]) -> bytes:
    body = b""
    for name, ntype in notes:
        raw = name + b"\0"
        body += struct.pack("<III", len(raw), 4, ntype) + raw + b"\0" * (-len(raw) % 4) + b"\0" * 4
    header = bytearray(64)
    header[0:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)          # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, 1)       # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(body), len(body), 4)
    return bytes(header) + phdr + body


def test_pvh_payload_extracted_only_when_it_has_the_entry_note() -> None:
    pvh = _elf_with_notes([(b"Xen", 6), (b"Xen", 18)])
    plain = _elf_with_notes([(b"Xen", 6), (b"GNU", 18)])
    assert has_pvh_entry(pvh) and not has_pvh_entry(plain)
    wrap = b"\0" * 600 + lzma.compress(pvh, format=lzma.FORMAT_XZ) + b"trailer"
    assert extract_pvh_vmlinux(wrap) == pvh
    assert extract_pvh_vmlinux(b"\0" * 600 + lzma.compress(plain, format=lzma.FORMAT_XZ)) is None
    assert extract_pvh_vmlinux(b"not a kernel") is None


@pytest.fixture
def sources(tmp_path: Path) -> BuildSources:
    """A fake /boot and /lib/modules, real busybox and a copy of the helper sources."""
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "vmlinuz-6.1.0-1-test").write_bytes(b"fake kernel " * 100)
    mods = tmp_path / "modules" / "6.1.0-1-test"
    for rel in parse_modules_dep(DEP):
        path = mods / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = f"module {rel}".encode()
        path.write_bytes(lzma.compress(data) if rel.endswith(".xz") else data)
    (mods / "modules.dep").write_text(DEP)
    helpers = tmp_path / "guest_src"
    shutil.copytree(guest_sources.HELPER_SRC_DIR, helpers)
    return BuildSources(boot_dir=boot, modules_root=tmp_path / "modules", helper_src_dir=helpers)


def test_input_hash_follows_every_input(sources: BuildSources) -> None:
    inputs = find_inputs(sources)
    base = hash_inputs(inputs, "1")
    assert base == hash_inputs(find_inputs(sources), "1")
    assert hash_inputs(inputs, "2") != base
    assert hash_inputs(inputs, "1", extra="other template") != base
    helper = sources.helper_src_dir / "mhm-heartbeat.c"
    helper.write_text(helper.read_text() + "\n/* changed */\n")
    assert hash_inputs(inputs, "1") != base
    module = inputs.modules[0]
    before = hash_inputs(inputs, "1")
    module.write_bytes(module.read_bytes() + b"!")
    assert hash_inputs(inputs, "1") != before


def test_build_is_deterministic_and_skipped_when_current(
        sources: BuildSources, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    image = build_guest(out, sources=sources)
    assert image == GuestImage.load(out)
    assert sorted(image.helpers) == sorted(p.stem for p in sources.helper_src_dir.glob("*.c"))
    assert {"mhm-diskpattern", "mhm-heartbeat", "mhm-memcheck", "mhm-memdirty"} <= set(
        image.helpers)
    manifest = json.loads((out / "mhm-guest.json").read_text())
    assert manifest["modules"] == ["virtio_ring.ko", "virtio.ko", "virtio_pci.ko",
                                   "virtio_blk.ko"]
    assert manifest["kernel_format"] == "bzimage"   # the fake kernel has no payload
    assert not list(out.glob(".mhm-guest-build-*"))

    def no_rebuild(*args: object, **kwargs: object) -> GuestImage:
        raise AssertionError("rebuilt although nothing changed")

    with monkeypatch.context() as patch:
        patch.setattr(guest_mod, "_build", no_rebuild)
        assert build_guest(out, sources=sources) == image

    other = build_guest(tmp_path / "other", sources=sources, force=True)
    assert other.input_sha256 == image.input_sha256
    for name in ("mhm-guest-initrd.img", "mhm-guest-vmlinuz", "mhm-guest.qcow2"):
        assert (out / name).read_bytes() == (tmp_path / "other" / name).read_bytes(), name


def test_changed_input_or_missing_file_rebuilds(sources: BuildSources, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = build_guest(out, sources=sources)
    helper = sources.helper_src_dir / "mhm-memcheck.c"
    helper.write_text(helper.read_text() + "\n/* v2 */\n")
    second = build_guest(out, sources=sources)
    assert second.input_sha256 != first.input_sha256
    assert GuestImage.load(out).input_sha256 == second.input_sha256
    second.initrd.unlink()
    assert not is_current(out, second.input_sha256)
    assert build_guest(out, sources=sources).initrd.is_file()


def test_crashed_build_keeps_the_old_guest_whole(sources: BuildSources, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    old = build_guest(out, sources=sources)
    old_initrd = old.initrd.read_bytes()

    def broken_disk(*args: object) -> None:
        raise LabError("qemu-img exploded")

    monkeypatch.setattr(guest_mod, "create_disk", broken_disk)
    with pytest.raises(LabError, match="exploded"):
        build_guest(out, sources=sources, force=True)
    assert GuestImage.load(out) == old and old.initrd.read_bytes() == old_initrd
    assert not list(out.glob(".mhm-guest-build-*"))


def test_crash_while_installing_leaves_no_manifest(sources: BuildSources, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    build_guest(out, sources=sources)
    real_replace = os.replace
    calls: List[str] = []

    def replace_then_crash(src: Path, dst: Path) -> None:
        calls.append(Path(dst).name)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_crash)
    with pytest.raises(OSError):
        build_guest(out, sources=sources, force=True)
    monkeypatch.undo()
    assert not (out / "mhm-guest.json").exists()
    with pytest.raises(LabError, match="no tiny guest"):
        GuestImage.load(out)
    assert not is_current(out, GuestImage(Path(), Path(), Path()).input_sha256)
    assert build_guest(out, sources=sources).initrd.is_file()     # recovers


def test_missing_busybox_and_helpers_are_named(sources: BuildSources, tmp_path: Path) -> None:
    with pytest.raises(LabError, match="busybox-static"):
        find_inputs(replace(sources, busybox=tmp_path / "nope"))
    with pytest.raises(LabError, match="helper sources"):
        find_inputs(replace(sources, helper_src_dir=tmp_path / "empty"))


def test_manifest_round_trip_and_bad_manifests(tmp_path: Path) -> None:
    image = GuestImage(kernel=tmp_path / "k", initrd=tmp_path / "i", disk=tmp_path / "d",
                       helpers={"mhm-memdirty": "/usr/bin/mhm-memdirty"}, input_sha256="ab")
    (tmp_path / "mhm-guest.json").write_text(json.dumps(image.to_manifest()))
    assert GuestImage.load(tmp_path) == image
    assert image.to_dict()["kernel"] == str(tmp_path / "k")
    assert is_current(tmp_path, "ab") is False          # files do not exist
    for name in ("k", "i", "d"):
        (tmp_path / name).write_bytes(b"")
    assert is_current(tmp_path, "ab") and not is_current(tmp_path, "cd")
    (tmp_path / "mhm-guest.json").write_text(json.dumps(dict(image.to_manifest(), format=99)))
    with pytest.raises(LabError, match="format"):
        GuestImage.load(tmp_path)
    (tmp_path / "mhm-guest.json").write_text("{not json")
    with pytest.raises(LabError, match="unreadable"):
        GuestImage.load(tmp_path)


def test_prompt_regex_accepts_the_cursor_query() -> None:
    import re
    image = GuestImage(kernel=Path("k"), initrd=Path("i"), disk=Path("d"))
    assert re.search(image.shell_prompt_regex, "x\nmhm-guest# ")
    assert re.search(image.shell_prompt_regex, "x\nmhm-guest# \x1b[6n")
    assert not re.search(image.shell_prompt_regex, "mhm-guest# echo hi")


def test_probe_falls_back_to_tcg_without_kvm_or_qemu(tmp_path: Path) -> None:
    image = GuestImage(kernel=tmp_path / "k", initrd=tmp_path / "i", disk=tmp_path / "d")
    assert "cannot open" in kvm_device_usable(str(tmp_path / "no-kvm"))
    accel, reason = probe_accel_reason(image, device=str(tmp_path / "no-kvm"))
    assert (accel, "no-kvm" in reason) == ("tcg", True)
    fake_kvm = tmp_path / "kvm"
    fake_kvm.write_bytes(b"")
    accel, reason = probe_accel_reason(image, timeout=5, qemu=str(tmp_path / "no-qemu"),
                                       device=str(fake_kvm))
    assert accel == "tcg" and "did not reach login" in reason


def test_cached_probe_reuses_the_verdict_until_the_guest_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: List[str] = []

    def fake_probe(guest: GuestImage, timeout: float, qemu: str) -> Tuple[str, str]:
        calls.append(guest.input_sha256)
        return "tcg", "fake says no"

    monkeypatch.setattr(accel, "probe_accel_reason", fake_probe)
    image = GuestImage(kernel=tmp_path / "k", initrd=tmp_path / "i", disk=tmp_path / "d",
                       input_sha256="one")
    cache = tmp_path / "accel.json"
    assert cached_probe(image, cache) == ("tcg", "fake says no")
    assert cached_probe(image, cache) == ("tcg", "fake says no (cached)")
    assert calls == ["one"]
    assert cached_probe(replace(image, input_sha256="two"), cache)[0] == "tcg"
    assert calls == ["one", "two"]
    cache.write_text("garbage")
    assert cached_probe(image, cache) == ("tcg", "fake says no")
