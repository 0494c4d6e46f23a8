"""Typed VM configuration, parsed once from the per-VM Cartesian params.

Params keys understood (all plain strings, already resolved for the VM):

    qemu_binary      qemu-system-x86_64
    machine_type     q35
    accel            tcg | kvm | kvm:tcg              (default tcg)
    mem              MiB, default 256
    smp              default 1
    cpu_model        optional (-cpu)
    kernel, initrd, kernel_params                      direct kernel boot
    images           space-separated image names (default "image1" when a
                     disk is given); per image, `KEY_<image>` overrides `KEY`:
      image_path     full path of the disk file, or
      image_name     path without extension (absolute, or relative to
                     images_base_dir, default /var/lib/virt_test/images)
      image_format   qcow2
      drive_cache    none (falls back to writethrough if O_DIRECT fails)
      drive_format   virtio (-> virtio-blk-pci) | ide | scsi-hd
      image_readonly yes|no
    extra_params     appended verbatim (shlex-split)
    username / password / shell_prompt / login_prompt / password_prompt / login_timeout
    serials          extra serial ports by name (e.g. "hb0"); ttyS0 is always the console
    heartbeat        yes: ttyS1 is a heartbeat port read by the host (see
                     qemu/heartbeat.py); extra `serials` follow it (ttyS2...)
    migration_tls    x509 | psk (default off), with migration_tls_dir,
                     migration_tls_hostname, migration_tls_psk_username (see tls.py)
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import ConfigError
from .tls import TLSConfig

DEFAULT_IMAGES_DIR = "/var/lib/virt_test/images"
ACCELS = ("tcg", "kvm", "kvm:tcg", "tcg:kvm")
CACHE_MODES = ("none", "writethrough", "writeback", "directsync", "unsafe")
DRIVE_DEVICES = {"virtio": "virtio-blk-pci", "virtio-blk": "virtio-blk-pci",
                 "ide": "ide-hd", "scsi-hd": "scsi-hd"}


@dataclass(frozen=True)
class DiskConfig:
    name: str
    path: Path
    fmt: str = "qcow2"
    cache: str = "none"
    device: str = "virtio-blk-pci"
    readonly: bool = False


@dataclass(frozen=True)
class LoginConfig:
    username: str = "root"
    password: str = "mhm"
    shell_prompt: str = r"mhm-guest# $"
    login_prompt: str = r"login: $"
    password_prompt: str = r"[Pp]assword: $"
    timeout: float = 60.0


@dataclass(frozen=True)
class VMConfig:
    name: str
    qemu_binary: str = "qemu-system-x86_64"
    machine_type: str = "q35"
    accel: str = "tcg"
    mem_mib: int = 256
    smp: int = 1
    cpu_model: Optional[str] = None
    kernel: Optional[Path] = None
    initrd: Optional[Path] = None
    kernel_params: str = ""
    disks: tuple[DiskConfig, ...] = ()
    extra_args: tuple[str, ...] = ()
    serials: tuple[str, ...] = ()
    login: LoginConfig = field(default_factory=LoginConfig)
    heartbeat: bool = False
    tls: Optional[TLSConfig] = None

    @classmethod
    def from_params(cls, name: str, params: Mapping[str, Any]) -> "VMConfig":
        def get(key: str, default: str = "") -> str:
            value = params.get(key)
            return default if value is None else str(value)

        accel = get("accel", "tcg")
        if accel not in ACCELS:
            raise ConfigError(f"{name}: accel={accel!r}, expected one of {ACCELS}")
        return cls(
            name=name,
            qemu_binary=get("qemu_binary", "qemu-system-x86_64"),
            machine_type=get("machine_type", "q35"),
            accel=accel,
            mem_mib=_int(name, "mem", get("mem", "256")),
            smp=_int(name, "smp", get("smp", "1")),
            cpu_model=get("cpu_model") or None,
            kernel=Path(get("kernel")) if get("kernel") else None,
            initrd=Path(get("initrd")) if get("initrd") else None,
            kernel_params=get("kernel_params"),
            disks=_disks(name, params),
            extra_args=tuple(shlex.split(get("extra_params"))),
            serials=tuple(get("serials").split()),
            login=LoginConfig(
                username=get("username", "root"),
                password=get("password", "mhm"),
                shell_prompt=get("shell_prompt", r"mhm-guest# $"),
                login_prompt=get("login_prompt", r"login: $"),
                password_prompt=get("password_prompt", r"[Pp]assword: $"),
                timeout=float(_int(name, "login_timeout", get("login_timeout", "60"))),
            ),
            heartbeat=_yes(name, "heartbeat", get("heartbeat", "no")),
            tls=TLSConfig.from_params(name, params),
        )


def _yes(name: str, key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("yes", "on", "true", "1"):
        return True
    if lowered in ("no", "off", "false", "0", ""):
        return False
    raise ConfigError(f"{name}: {key}={value!r}, expected yes or no")


def _int(name: str, key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}: {key}={value!r} is not an integer") from None
    if number <= 0:
        raise ConfigError(f"{name}: {key}={value!r} must be positive")
    return number


def _disks(vm: str, params: Mapping[str, Any]) -> tuple[DiskConfig, ...]:
    def get(key: str, image: str, default: str = "") -> str:
        for k in (f"{key}_{image}", key):
            value = params.get(k)
            if value is not None and str(value) != "":
                return str(value)
        return default

    names = str(params.get("images") or "").split()
    if not names and (params.get("image_path") or params.get("image_name")):
        names = ["image1"]
    disks = []
    for image in names:
        fmt = get("image_format", image, "qcow2")
        path_s = get("image_path", image)
        if not path_s:
            image_name = get("image_name", image)
            if not image_name:
                raise ConfigError(f"{vm}: image {image!r} has neither image_path "
                                  f"nor image_name")
            base = Path(get("images_base_dir", image, DEFAULT_IMAGES_DIR))
            path = base / image_name
            if path.suffix != f".{fmt}" and fmt != "raw":
                path = path.with_name(path.name + f".{fmt}")
            path_s = str(path)
        cache = get("drive_cache", image, "none")
        if cache not in CACHE_MODES:
            raise ConfigError(f"{vm}: drive_cache={cache!r}, expected one of {CACHE_MODES}")
        drive_format = get("drive_format", image, "virtio")
        device = DRIVE_DEVICES.get(drive_format)
        if device is None:
            raise ConfigError(f"{vm}: drive_format={drive_format!r}, expected one of "
                              f"{sorted(DRIVE_DEVICES)}")
        disks.append(DiskConfig(name=image, path=Path(path_s), fmt=fmt, cache=cache,
                                device=device,
                                readonly=get("image_readonly", image, "no") == "yes"))
    return tuple(disks)
