"""Command line building from params (no QEMU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.qemu.cmdline import (RunPaths, build_command, effective_cache,
                                              o_direct_supported, qarg)
from multihost_migration.qemu.config import DiskConfig, VMConfig

PATHS = RunPaths(qmp_socket=Path("/r/qmp.sock"), serial_socket=Path("/r/serial.sock"),
                 serial_log=Path("/l/vm1-serial.log"), qemu_log=Path("/l/vm1-qemu.log"),
                 pidfile=Path("/r/qemu.pid"), extra_serial_dir=Path("/r"))

BASE = {"kernel": "/img/k", "initrd": "/img/i", "kernel_params": "console=ttyS0 quiet",
        "image_path": "/img/d.qcow2"}


def option(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]


def test_defaults() -> None:
    args = build_command(VMConfig.from_params("vm1", BASE), PATHS)
    assert args[0] == "qemu-system-x86_64"
    assert option(args, "-machine") == ["q35,accel=tcg"]
    assert option(args, "-m") == ["256"]
    assert option(args, "-smp") == ["1"]
    assert option(args, "-kernel") == ["/img/k"]
    assert option(args, "-initrd") == ["/img/i"]
    assert option(args, "-append") == ["console=ttyS0 quiet"]
    assert option(args, "-qmp") == ["unix:/r/qmp.sock,server=on,wait=off"]
    assert option(args, "-serial") == ["chardev:serial0"]
    chardev = option(args, "-chardev")[0]
    assert "path=/r/serial.sock" in chardev and "logfile=/l/vm1-serial.log" in chardev
    assert "server=on,wait=off" in chardev
    assert option(args, "-drive") == [
        "file=/img/d.qcow2,if=none,id=drive_image1,format=qcow2,cache=none"]
    assert option(args, "-device") == ["virtio-blk-pci,drive=drive_image1,id=image1"]
    assert "-incoming" not in args and "-cpu" not in args


def test_params_are_honoured() -> None:
    params = dict(BASE, qemu_binary="/opt/qemu", machine_type="pc", accel="kvm:tcg",
                  mem="1024", smp="2", cpu_model="host",
                  extra_params="-device virtio-rng-pci -global 'a.b=c d'")
    args = build_command(VMConfig.from_params("vm1", params), PATHS, incoming="defer")
    assert args[0] == "/opt/qemu"
    assert option(args, "-machine") == ["pc,accel=kvm:tcg"]
    assert option(args, "-m") == ["1024"] and option(args, "-smp") == ["2"]
    assert option(args, "-cpu") == ["host"]
    assert option(args, "-incoming") == ["defer"]
    assert args[-4:] == ["-device", "virtio-rng-pci", "-global", "a.b=c d"]


def test_cache_override_and_fallback() -> None:
    config = VMConfig.from_params("vm1", BASE)
    args = build_command(config, PATHS, caches={"image1": "writethrough"})
    assert option(args, "-drive")[0].endswith("cache=writethrough")
    disk = config.disks[0]
    assert effective_cache(disk, o_direct=False) == "writethrough"
    assert effective_cache(disk, o_direct=True) == "none"
    unsafe = DiskConfig("d", Path("/x"), cache="unsafe")
    assert effective_cache(unsafe, o_direct=False) == "unsafe"


def test_o_direct_probe_on_real_file(tmp_path: Path) -> None:
    image = tmp_path / "x.img"
    image.write_bytes(b"\0" * 4096)
    assert o_direct_supported(image) in (True, False)
    with pytest.raises(FileNotFoundError):
        o_direct_supported(tmp_path / "missing")


def test_images_list_and_image_name() -> None:
    params = {"images": "image1 data", "image_name_image1": "jeos",
              "images_base_dir": "/shared", "image_name_data": "/abs/data",
              "image_format_data": "raw", "drive_cache_data": "writeback",
              "drive_format_data": "scsi-hd", "image_readonly_data": "yes"}
    config = VMConfig.from_params("vm1", params)
    assert [d.path for d in config.disks] == [Path("/shared/jeos.qcow2"), Path("/abs/data")]
    args = build_command(config, PATHS)
    drives = option(args, "-drive")
    assert drives[1] == ("file=/abs/data,if=none,id=drive_data,format=raw,"
                         "cache=writeback,readonly=on")
    assert "virtio-scsi-pci,id=scsi0" in option(args, "-device")
    assert "scsi-hd,drive=drive_data,id=data" in option(args, "-device")


def test_no_disk_and_no_kernel() -> None:
    args = build_command(VMConfig.from_params("vm1", {}), PATHS)
    assert "-drive" not in args and "-kernel" not in args


def test_extra_serial_ports() -> None:
    args = build_command(VMConfig.from_params("vm1", dict(BASE, serials="hb0")), PATHS)
    assert option(args, "-serial") == ["chardev:serial0", "chardev:hb0"]
    assert "path=/r/hb0.sock" in option(args, "-chardev")[1]
    assert "logfile=/l/vm1-serial-hb0.log" in option(args, "-chardev")[1]


def test_commas_in_paths_are_escaped() -> None:
    assert qarg("/a,b") == "/a,,b"
    args = build_command(VMConfig.from_params("vm1", {"image_path": "/x,y.qcow2"}), PATHS)
    assert option(args, "-drive")[0].startswith("file=/x,,y.qcow2,")


@pytest.mark.parametrize("key,value", [("accel", "xen"), ("mem", "lots"), ("smp", "0"),
                                       ("drive_cache", "fast"), ("drive_format", "floppy")])
def test_bad_params_raise_config_error(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        VMConfig.from_params("vm1", dict(BASE, **{key: value}))
    assert value in str(info.value)


def test_image_without_path_or_name() -> None:
    with pytest.raises(ConfigError, match="image_path"):
        VMConfig.from_params("vm1", {"images": "image1"})
