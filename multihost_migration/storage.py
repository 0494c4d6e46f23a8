"""Guest disks: on shared storage, or each host's own (storage_mode = copy).

shared: the master host creates each VM's disk once; every host then checks
that it sees the very same file (size and a content token), which catches a
"shared" directory that is in fact local to each host before any guest runs.

copy: every host keeps its own images; each creates the test's disks for
itself, and a migration's destination creates its target image fresh
(`create_target`: the source's virtual size, the same backing file) for the
source to mirror into (storage_copy.py, qemu/blockmirror.py).

Which images a VM has, and where, is parsed by `imagespec` (the one rule);
how disks travel is `StoragePlan`, read once per migration into the plan.

    storage_mode               shared | copy
    storage_copy_sync          full (every block) | top (incremental: only
                               the top image; its backing file must be on
                               both hosts, see image_backing)
    storage_copy_speed         mirror bandwidth limit, bytes/s (K/M/G), 0 = none
    storage_copy_ready_timeout seconds for the mirror to catch up (300)
    storage_copy_tls           yes: the NBD channel uses the migration's TLS
                               credentials when migration_tls is on (default)
    storage_copy_cancel_pct    cancel the migration once the mirror has
                               copied this % (the cancel-mid-mirror scenario)
    image_backing              (per image) backing file of a created image,
                               relative to images_base_dir or absolute
    image_backing_format       qcow2
    image_backing_create       yes: each host creating images creates the
                               backing file too, image_backing_fill (a byte,
                               0x5a) written over all of it with qemu-io
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from multihost_migration.errors import ConfigError, StorageError
from multihost_migration.imagespec import DEFAULT_IMAGES_DIR, ImageSpec
from multihost_migration.params import parse_bool

log = logging.getLogger(__name__)

__all__ = ["Backing", "ImageSpec", "StorageMode", "StoragePlan", "backing_of", "check_image",
           "create_backing", "create_image", "create_target", "fingerprint", "remove_image",
           "virtual_size"]

_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class StorageMode(enum.Enum):
    SHARED = "shared"
    COPY = "copy"


def _bytes(key: str, value: str) -> int:
    text = value.strip().lower()
    factor = _SUFFIXES.get(text[-1:], 1)
    try:
        number = int(text[:-1] if text[-1:] in _SUFFIXES else text) * factor
    except ValueError:
        raise ConfigError(f"{key}={value!r} is not a size (bytes, K/M/G)") from None
    if number < 0:
        raise ConfigError(f"{key}={value!r} must be >= 0")
    return number


@dataclass(frozen=True)
class StoragePlan:
    """How a migration's disks reach the destination (see the module docstring)."""

    mode: StorageMode = StorageMode.SHARED
    sync: str = "full"
    speed: int = 0
    ready_timeout: float = 300.0
    tls: bool = True
    cancel_at_pct: Optional[float] = None

    @property
    def copy(self) -> bool:
        return self.mode is StorageMode.COPY

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "StoragePlan":
        def get(key: str, default: str = "") -> str:
            value = params.get(key)
            return default if value is None or str(value) == "" else str(value).strip()

        try:
            mode = StorageMode(get("storage_mode", "shared"))
        except ValueError:
            raise ConfigError(f"storage_mode={get('storage_mode')!r}: shared or copy") from None
        sync = get("storage_copy_sync", "full")
        if sync not in ("full", "top"):
            raise ConfigError(f"storage_copy_sync={sync!r}: full or top")
        try:
            timeout = float(get("storage_copy_ready_timeout", "300"))
            pct = float(get("storage_copy_cancel_pct")) if get("storage_copy_cancel_pct") \
                else None
        except ValueError as err:
            raise ConfigError(f"storage_copy_*: {err}") from None
        return cls(mode=mode, sync=sync,
                   speed=_bytes("storage_copy_speed", get("storage_copy_speed", "0")),
                   ready_timeout=timeout,
                   tls=parse_bool(get("storage_copy_tls", "yes"), "storage_copy_tls"),
                   cancel_at_pct=pct)


@dataclass(frozen=True)
class Backing:
    """The backing file of a created image (the incremental copy's base)."""

    path: Path
    fmt: str = "qcow2"
    create: bool = False
    fill: int = 0x5A


def backing_of(spec: ImageSpec, params: Mapping[str, Any]) -> Optional[Backing]:
    """`image_backing[_<image>]` of a VM's params, None when unset."""
    def get(key: str, default: str = "") -> str:
        for name in (f"{key}_{spec.name}", key):
            value = params.get(name)
            if value is not None and str(value) != "":
                return str(value)
        return default

    name = get("image_backing")
    if not name:
        return None
    path = Path(name)
    if not path.is_absolute():
        path = Path(get("images_base_dir", DEFAULT_IMAGES_DIR)) / path
    try:
        fill = int(get("image_backing_fill", "0x5a"), 0)
    except ValueError:
        raise ConfigError(f"{spec.vm}: image_backing_fill must be a byte") from None
    return Backing(path, get("image_backing_format", "qcow2"),
                   parse_bool(get("image_backing_create", "no"),
                              f"{spec.vm}: image_backing_create"), fill & 0xFF)


def _run(what: str, cmd: list[str], timeout: float) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise StorageError(f"{what}: {' '.join(cmd)} failed: {err}") from err
    if proc.returncode != 0:
        raise StorageError(f"{what}: {' '.join(cmd)} exited {proc.returncode}: "
                           f"{proc.stderr.strip()}")
    return proc.stdout


def create_image(spec: ImageSpec, timeout: float = 60.0,
                 backing: Optional[Backing] = None) -> None:
    """Create (or re-create) a blank image: the guest writes its own data
    (over `backing`, when given)."""
    if not spec.path.parent.is_dir():
        raise StorageError(f"{spec.vm}: images directory {spec.path.parent} does not exist "
                           "(is the shared storage mounted?)")
    cmd = ["qemu-img", "create", "-q", "-f", spec.fmt]
    if backing is not None:
        cmd += ["-b", str(backing.path), "-F", backing.fmt]
    _run(spec.vm, cmd + [str(spec.path), spec.size], timeout)
    log.info("%s: created %s (%s, %s%s)", spec.vm, spec.path, spec.fmt, spec.size,
             f", backing {backing.path}" if backing else "")


def create_backing(spec: ImageSpec, backing: Backing, timeout: float = 120.0) -> None:
    """The backing file of `spec`, `spec.size`, every byte `backing.fill`:
    the same content on every host that creates it."""
    _run(spec.vm, ["qemu-img", "create", "-q", "-f", backing.fmt, str(backing.path),
                   spec.size], timeout)
    size = virtual_size(backing.path, timeout)
    _run(spec.vm, ["qemu-io", "-f", backing.fmt, "-c",
                   f"write -q -P {backing.fill} 0 {size}", str(backing.path)], timeout)
    log.info("%s: created backing %s (%s, filled with 0x%02x)", spec.vm, backing.path,
             spec.size, backing.fill)


def virtual_size(path: Path, timeout: float = 30.0) -> int:
    """The image's virtual size in bytes (-U: a running guest holds its lock)."""
    out = _run(str(path), ["qemu-img", "info", "-U", "--output=json", str(path)], timeout)
    try:
        return int(json.loads(out)["virtual-size"])
    except (ValueError, KeyError, TypeError) as err:
        raise StorageError(f"qemu-img info {path}: no virtual-size in {out[:200]!r}") from err


def create_target(spec: ImageSpec, size: int, backing: Optional[Backing] = None,
                  timeout: float = 60.0) -> None:
    """Destination of a copy: a fresh image of the source's virtual size
    (bytes), on the same backing file when the copy is incremental; what
    was there before (a stale copy of an earlier round) goes."""
    if not spec.path.parent.is_dir():
        raise StorageError(f"{spec.vm}: images directory {spec.path.parent} does not exist")
    if backing is not None and not backing.path.is_file():
        raise StorageError(f"{spec.vm}: backing file {backing.path} missing on this host "
                           f"(the incremental copy needs it on both)")
    spec.path.unlink(missing_ok=True)
    cmd = ["qemu-img", "create", "-q", "-f", spec.fmt]
    if backing is not None:
        cmd += ["-b", str(backing.path), "-F", backing.fmt]
    _run(spec.vm, cmd + [str(spec.path), str(size)], timeout)
    log.info("%s: target %s created (%d bytes%s)", spec.vm, spec.path, size,
             f", backing {backing.path}" if backing else "")


def check_image(spec: ImageSpec) -> None:
    if not spec.path.exists():
        raise StorageError(f"{spec.vm}: image {spec.path} not found on this host "
                           "(wrong image_name, or the storage is not shared)")


def fingerprint(path: Path) -> str:
    """Size and hash of the first 64 KiB: equal on hosts that share the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
        return f"{os.path.getsize(path)}:{hashlib.sha256(head).hexdigest()[:16]}"
    except OSError as err:
        raise StorageError(f"cannot read {path}: {err}") from err


def remove_image(spec: ImageSpec) -> None:
    try:
        spec.path.unlink(missing_ok=True)
    except OSError as err:
        log.warning("could not remove %s: %s", spec.path, err)
