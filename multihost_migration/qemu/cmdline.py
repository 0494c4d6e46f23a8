"""The QEMU command line, built from a VMConfig and the VM's file paths.

Pure functions, no I/O, so unit tests can check every option.  The cache
probe (`o_direct_supported`) is the only I/O here and is called by the VM
at launch time, never by a constructor.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from .config import DiskConfig, VMConfig
from .netdev import nic_args


@dataclass(frozen=True)
class RunPaths:
    """Where one VM's sockets and logs live."""

    qmp_socket: Path
    serial_socket: Path
    serial_log: Path
    qemu_log: Path
    pidfile: Path
    extra_serial_dir: Path

    @property
    def heartbeat_socket(self) -> Path:
        """Where the host's heartbeat recorder listens (QEMU connects)."""
        return self.extra_serial_dir / "heartbeat.sock"

    def extra_serial_socket(self, name: str) -> Path:
        return self.extra_serial_dir / f"{name}.sock"

    def extra_serial_log(self, name: str) -> Path:
        return self.serial_log.with_name(
            self.serial_log.name.replace("serial", f"serial-{name}"))


def qarg(value: object) -> str:
    """Escape a value for a QEMU comma-separated option (',' -> ',,')."""
    return str(value).replace(",", ",,")


def o_direct_supported(path: Path) -> bool:
    """True if `path` can be opened with O_DIRECT (cache=none needs it)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | flag)
    except OSError as err:
        if err.errno == errno.EINVAL:
            return False
        raise
    os.close(fd)
    return True


def effective_cache(disk: DiskConfig, o_direct: bool) -> str:
    """cache=none/directsync need O_DIRECT; fall back to writethrough."""
    if disk.cache in ("none", "directsync") and not o_direct:
        return "writethrough"
    return disk.cache


def build_command(config: VMConfig, paths: RunPaths, incoming: Optional[str] = None,
                  caches: Optional[Mapping[str, str]] = None) -> list[str]:
    """The full argv for QEMU.

    `incoming` is the -incoming argument (normally "defer").  `caches` maps a
    disk name to the cache mode chosen after probing O_DIRECT.
    """
    caches = caches or {}
    args = [config.qemu_binary,
            "-name", f"{config.name},debug-threads=on",
            "-machine", f"{config.machine_type},accel={config.accel}",
            "-m", str(config.mem_mib),
            "-smp", str(config.smp),
            "-nodefaults", "-nographic",
            "-pidfile", str(paths.pidfile),
            "-qmp", f"unix:{qarg(paths.qmp_socket)},server=on,wait=off",
            "-chardev", (f"socket,id=serial0,path={qarg(paths.serial_socket)},"
                         f"server=on,wait=off,logfile={qarg(paths.serial_log)},logappend=on"),
            "-serial", "chardev:serial0"]
    if config.heartbeat:  # ttyS1; the host listens before QEMU starts
        args += ["-chardev", (f"socket,id=heartbeat,path={qarg(paths.heartbeat_socket)},"
                              f"server=off"),
                 "-serial", "chardev:heartbeat"]
    for name in config.serials:
        args += ["-chardev", (f"socket,id={name},path={qarg(paths.extra_serial_socket(name))},"
                              f"server=on,wait=off,"
                              f"logfile={qarg(paths.extra_serial_log(name))},logappend=on"),
                 "-serial", f"chardev:{name}"]
    if config.cpu_model:
        args += ["-cpu", config.cpu_model]
    if config.kernel is not None:
        args += ["-kernel", str(config.kernel)]
        if config.initrd is not None:
            args += ["-initrd", str(config.initrd)]
        append = config.kernel_params
        if config.nic is not None and config.nic.kernel_ip:
            append = f"{append} {config.nic.kernel_param}".strip()
        if append:
            args += ["-append", append]
    if any(d.device == "scsi-hd" for d in config.disks):
        args += ["-device", "virtio-scsi-pci,id=scsi0"]
    for disk in config.disks:
        args += _disk_args(disk, caches.get(disk.name, disk.cache))
    if config.nic is not None:
        args += nic_args(config.nic)
    if config.tls is not None:
        args += config.tls.object_args()
    if incoming is not None:
        args += ["-incoming", incoming]
    args += list(config.extra_args)
    return args


def _disk_args(disk: DiskConfig, cache: str) -> list[str]:
    drive = (f"file={qarg(disk.path)},if=none,id=drive_{disk.name},format={disk.fmt},"
             f"cache={cache}")
    if disk.readonly:
        drive += ",readonly=on"
    device = f"{disk.device},drive=drive_{disk.name},id={disk.name}"
    return ["-drive", drive, "-device", device]
