"""Guest disks on shared storage.

The master host creates each VM's disk once; every host then checks that it
sees the very same file (size and a content token), which catches a
"shared" directory that is in fact local to each host before any guest runs.
Which images a VM has, and where, is parsed by `imagespec` (the one rule).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from pathlib import Path

from multihost_migration.errors import StorageError
from multihost_migration.imagespec import ImageSpec

log = logging.getLogger(__name__)

__all__ = ["ImageSpec", "check_image", "create_image", "fingerprint", "remove_image"]


def create_image(spec: ImageSpec, timeout: float = 60.0) -> None:
    """Create (or re-create) a blank image: the guest writes its own data."""
    if not spec.path.parent.is_dir():
        raise StorageError(f"{spec.vm}: images directory {spec.path.parent} does not exist "
                           "(is the shared storage mounted?)")
    cmd = ["qemu-img", "create", "-q", "-f", spec.fmt, str(spec.path), spec.size]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise StorageError(f"{spec.vm}: {' '.join(cmd)} failed: {err}") from err
    if proc.returncode != 0:
        raise StorageError(f"{spec.vm}: {' '.join(cmd)} exited {proc.returncode}: "
                           f"{proc.stderr.strip()}")
    log.info("%s: created %s (%s, %s)", spec.vm, spec.path, spec.fmt, spec.size)


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
