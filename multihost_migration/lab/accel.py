"""Pick the QEMU accelerator: KVM only where it really boots a guest.

/dev/kvm can exist and open fine while guests hang under it (nested setups,
broken hosts), so the probe boots the tiny guest under `-accel kvm` and
requires its `login:` prompt before a deadline; anything else means TCG.
`cached_probe` remembers the verdict in a JSON file keyed by the guest build,
the QEMU binary and the KVM device, so a lab pays for the probe once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Tuple

from multihost_migration.errors import MigrationTestError
from multihost_migration.lab.guest import GuestImage
from multihost_migration.lab.guest_console import GuestConsole

log = logging.getLogger(__name__)

KVM_DEVICE = "/dev/kvm"


def kvm_device_usable(device: str = KVM_DEVICE) -> str:
    """Empty string if `device` opens read-write, else the reason it does not."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        return f"cannot open {device}: {err.strerror}"
    os.close(fd)
    return ""


def probe_accel_reason(guest: GuestImage, timeout: float = 20.0,
                       qemu: str = "qemu-system-x86_64",
                       device: str = KVM_DEVICE) -> Tuple[str, str]:
    """("kvm" | "tcg", one-line reason).  Never raises; QEMU is always stopped."""
    reason = kvm_device_usable(device)
    if reason:
        return "tcg", reason
    start = time.monotonic()
    # No disk: the probe must not fight running VMs for the image lock.
    console = GuestConsole(guest, accel="kvm", qemu=qemu, name="kvm-probe",
                           attach_disk=False)
    try:
        console.start()
        console.expect(guest.login_prompt_regex, timeout)
    except MigrationTestError as err:
        log.debug("KVM probe console output:\n%s\nQEMU stderr:\n%s",
                  console.output[-2000:], console.qemu_stderr())
        detail = str(err).splitlines()[0]
        stderr = console.qemu_stderr().strip().splitlines()
        if stderr:
            detail += f"; QEMU said: {stderr[-1]}"
        return "tcg", f"guest did not reach login: under KVM within {timeout:.0f} s ({detail})"
    finally:
        console.close()
    return "kvm", f"guest reached login: under KVM in {time.monotonic() - start:.1f} s"


def probe_accel(guest: GuestImage, timeout: float = 20.0,
                qemu: str = "qemu-system-x86_64") -> str:
    """"kvm" if the guest reaches login: under KVM within `timeout` s, else "tcg"."""
    accel, reason = probe_accel_reason(guest, timeout, qemu)
    log.info("accelerator: %s (%s)", accel, reason)
    return accel


def _cache_key(guest: GuestImage, qemu: str, device: str) -> str:
    qemu_path = shutil.which(qemu) or qemu
    try:
        qemu_id = f"{qemu_path}:{os.stat(qemu_path).st_mtime_ns}"
    except OSError:
        qemu_id = qemu_path
    kvm_id = "absent"
    if os.path.exists(device):
        kvm_id = f"{device}:{os.stat(device).st_rdev}"
    return f"{guest.input_sha256}|{qemu_id}|{kvm_id}|{os.uname().release}"


def cached_probe(guest: GuestImage, cache_file: Path, timeout: float = 20.0,
                 qemu: str = "qemu-system-x86_64") -> Tuple[str, str]:
    """probe_accel_reason, remembered in `cache_file` while its key holds."""
    key = _cache_key(guest, qemu, KVM_DEVICE)
    try:
        cached = json.loads(Path(cache_file).read_text())
        if (isinstance(cached, dict) and cached.get("key") == key
                and cached.get("accel") in ("kvm", "tcg")):
            return str(cached["accel"]), f"{cached.get('reason', '')} (cached)"
    except (OSError, ValueError):
        pass
    accel, reason = probe_accel_reason(guest, timeout, qemu)
    log.info("accelerator: %s (%s)", accel, reason)
    tmp = Path(f"{cache_file}.tmp")
    tmp.write_text(json.dumps({"key": key, "accel": accel, "reason": reason}) + "\n")
    os.replace(tmp, cache_file)
    return accel, reason
