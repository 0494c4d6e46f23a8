"""`mhm lab up --storage local|shared`: what each lab host sees as its images.

shared (the default): /var/lib/virt_test/{images,images_archive} of every
host are bind mounts of the lab's one shared directory (sshd.py), the
"NFS" of a real lab.

local: each host gets its own directories instead, LOCAL_ROOT/<host>/
{images,images_archive}, nothing shared between hosts: a migration that
relies on shared storage by mistake fails there, as it would between real
hosts without NFS (storage_mode = copy is tested on it).  The guest's
boot files (mhm-guest-*) are copied into every host's own images
directory, so the guest boots anywhere.

The switch is made inside each host's mount namespace (the one its sshd
and everything it starts live in), umounting and bind-mounting again, as
qemu_choice does for the QEMU binary; the root mount namespace is never
touched.  The mode is recorded in the state directory (storage.json), so
a plain `mhm lab up` knows to put the shared mounts back.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from multihost_migration.errors import LabError
from multihost_migration.lab.config import VIRT_TEST_ROOT, LabConfig
from multihost_migration.lab.inventory import Inventory

log = logging.getLogger(__name__)

MODES = ("shared", "local")
#: Per-host directories of a `--storage local` lab (removed when it goes back to shared).
LOCAL_ROOT = Path(os.environ.get("MHM_LAB_LOCAL", "/var/lib/mhm-lab/local"))
#: The directories that become per host (the read-only reference ones stay shared).
LOCAL_SUBDIRS = ("images", "images_archive")
GUEST_FILES = "mhm-guest*"
STATE_FILE = "storage.json"


def current(state_dir: Path) -> str:
    """The storage mode the lab's hosts have now ("shared" unless recorded)."""
    try:
        return str(json.loads((state_dir / STATE_FILE).read_text()).get("mode", "shared"))
    except (OSError, ValueError):
        return "shared"


def host_dir(host: str, root: Path = LOCAL_ROOT) -> Path:
    return root / host


def remount_script(sources: dict[str, Path]) -> str:
    """Shell run in a host's mount namespace: each /var/lib/virt_test/SUB
    becomes a bind mount of sources[SUB] (whatever was mounted there goes)."""
    lines = []
    for sub, source in sources.items():
        target = shlex.quote(str(VIRT_TEST_ROOT / sub))
        lines += [f"mkdir -p {target}",
                  f"n=0; while mountpoint -q {target} && [ $n -lt 8 ]; do "
                  f"umount {target}; n=$((n+1)); done",
                  f"mount --bind {shlex.quote(str(source))} {target}"]
    return "\n".join(lines)


def _remount(sshd_pid: int, sources: dict[str, Path], timeout: float = 30.0) -> None:
    argv = ["nsenter", "-t", str(sshd_pid), "-m", "--", "sh", "-ec", remount_script(sources)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LabError(f"cannot remount the images of the host of sshd {sshd_pid}: "
                       f"{err}") from err
    if result.returncode != 0:
        raise LabError(f"cannot remount the images of the host of sshd {sshd_pid}: "
                       f"{result.stderr.strip()[-300:]}")


def _copy_guest(shared_images: Path, images: Path) -> None:
    """The guest's boot files into a host's own images directory (only
    those missing or different in size/mtime)."""
    for src in shared_images.glob(GUEST_FILES):
        dst = images / src.name
        st = src.stat()
        if dst.exists() and dst.stat().st_size == st.st_size and \
                int(dst.stat().st_mtime) == int(st.st_mtime):
            continue
        shutil.copy2(src, dst)


def apply(cfg: LabConfig, inv: Inventory, mode: str, root: Path = LOCAL_ROOT) -> None:
    """Give every lab host `mode` storage (see the module docstring)."""
    if mode not in MODES:
        raise LabError(f"--storage {mode!r}: one of {', '.join(MODES)}")
    state_dir = Path(inv.state_dir)
    if mode == current(state_dir) and (mode == "shared" or root.is_dir()):
        return
    for host in inv.hosts:
        if mode == "local":
            base = host_dir(host.name, root)
            sources = {sub: base / sub for sub in LOCAL_SUBDIRS}
            for path in sources.values():
                path.mkdir(parents=True, exist_ok=True)
            _copy_guest(cfg.shared_dir / "images", sources["images"])
        else:
            sources = {sub: cfg.shared_dir / sub for sub in LOCAL_SUBDIRS}
        _remount(host.sshd_pid, sources)
        log.info("%s: %s storage", host.name, mode)
    (state_dir / STATE_FILE).write_text(json.dumps({"mode": mode}) + "\n")
    if mode == "shared":
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["LOCAL_ROOT", "MODES", "apply", "current", "remount_script"]
