"""Typed VM configuration, parsed once from the per-VM Cartesian params.

Params keys understood (all plain strings, already resolved for the VM):

    qemu_binary      qemu-system-x86_64
    machine_type     q35
    accel            tcg | kvm | kvm:tcg              (default tcg)
    mem              MiB, default 256
    smp              default 1
    cpu_model        optional (-cpu)
    kernel, initrd, kernel_params                      direct kernel boot
    images           the disks, parsed by multihost_migration.imagespec (the
                     one image rule: image_path / image_name, images_base_dir,
                     image_format, image_readonly...); checked here:
      drive_cache    none (falls back to writethrough if O_DIRECT fails)
      drive_format   virtio (-> virtio-blk-pci) | ide | scsi-hd
    extra_params     appended verbatim (shlex-split)
    username / password / shell_prompt / login_prompt / password_prompt / login_timeout
    login_via        auto (default): wait_for_login logs in over the guest's
                     network when the VM has a NIC, on the serial console
                     when it has none or the network login fails;
                     network: over the network only; serial: the console only
    serials          extra serial ports by name (e.g. "hb0"); ttyS0 is always the console
    heartbeat        yes: ttyS1 is a heartbeat port read by the host (see
                     qemu/heartbeat.py); extra `serials` follow it (ttyS2...)
    migration_tls    x509 | psk (default off), with migration_tls_dir,
                     migration_tls_hostname, migration_tls_psk_username (see tls.py)
    guest_network    yes: a NIC on the host's guest segment, with nic_model,
                     vhost, nic_queues ... (see netdev.py)
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import ConfigError
from ..imagespec import image_specs
from ..params import parse_bool
from .netdev import NicConfig
from .tls import TLSConfig

ACCELS = ("tcg", "kvm", "kvm:tcg", "tcg:kvm")
LOGIN_VIAS = ("auto", "network", "serial")
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
    via: str = "auto"


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
    nic: Optional[NicConfig] = None

    @classmethod
    def from_params(cls, name: str, params: Mapping[str, Any]) -> "VMConfig":
        def get(key: str, default: str = "") -> str:
            value = params.get(key)
            return default if value is None else str(value)

        accel = get("accel", "tcg")
        if accel not in ACCELS:
            raise ConfigError(f"{name}: accel={accel!r}, expected one of {ACCELS}")
        if get("login_via", "auto") not in LOGIN_VIAS:
            raise ConfigError(f"{name}: login_via={get('login_via')!r}, expected one of "
                              f"{LOGIN_VIAS}")
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
                via=get("login_via", "auto"),
            ),
            heartbeat=parse_bool(get("heartbeat", "no"), f"{name}: heartbeat"),
            tls=TLSConfig.from_params(name, params),
            nic=NicConfig.from_params(name, params),
        )


def _int(name: str, key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}: {key}={value!r} is not an integer") from None
    if number <= 0:
        raise ConfigError(f"{name}: {key}={value!r} must be positive")
    return number


def _disks(vm: str, params: Mapping[str, Any]) -> tuple[DiskConfig, ...]:
    disks = []
    for spec in image_specs(vm, params):
        if spec.cache not in CACHE_MODES:
            raise ConfigError(f"{vm}: drive_cache={spec.cache!r}, expected one of "
                              f"{CACHE_MODES}")
        device = DRIVE_DEVICES.get(spec.drive_format)
        if device is None:
            raise ConfigError(f"{vm}: drive_format={spec.drive_format!r}, expected one of "
                              f"{sorted(DRIVE_DEVICES)}")
        disks.append(DiskConfig(name=spec.name, path=spec.path, fmt=spec.fmt,
                                cache=spec.cache, device=device, readonly=spec.readonly))
    return tuple(disks)
