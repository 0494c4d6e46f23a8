"""vm.copy_files_to / copy_files_from as virttest's scp does them (a
directory recursively; into a guest directory that exists, under its own
name), with the VM's own copy over the guest's network (qemu/vm.py,
guest/network.py: the guest's nc, md5-checked).  A directory travels as
one tar file, unpacked by the guest's tar.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multihost_migration.errors import GuestError
from multihost_migration.qemu.vm import VM

if TYPE_CHECKING:
    from multihost_migration.legacy.vm import LegacyVM

log = logging.getLogger(__name__)


def _is_dir(shell: Any, path: str) -> bool:
    return int(shell.cmd_status(f"test -d {shlex.quote(path)}", timeout=30)) == 0


def copy_to(vm: "LegacyVM", local: Path, remote: str, timeout: float) -> None:
    """`local` (file or directory) to `remote` in the guest."""
    if not local.exists():
        raise GuestError(f"{vm.name}: vm.copy_files_to: {local} does not exist on this host")
    shell = vm.wait_for_login(60.0, "network")
    try:
        into_dir = _is_dir(shell, remote)
        if local.is_file():
            target = f"{remote.rstrip('/')}/{local.name}" if into_dir else remote
            VM.copy_files_to(vm, str(local), target, timeout=timeout)
            return
        dest = remote if into_dir else remote.rstrip("/") or "/"
        with tempfile.TemporaryDirectory(prefix="mhm-copy-") as tmp:
            archive = Path(tmp) / f"{local.name}.tar"
            with tarfile.open(archive, "w") as tar:
                tar.add(str(local), arcname=local.name if into_dir else ".")
            packed = f"/tmp/mhm-copy-{secrets.token_hex(4)}.tar"
            VM.copy_files_to(vm, str(archive), packed, timeout=timeout)
        q_dest, q_packed = shlex.quote(dest), shlex.quote(packed)
        shell.cmd(f"mkdir -p {q_dest} && tar -xf {q_packed} -C {q_dest}; st=$?; "
                  f"rm -f {q_packed}; [ $st = 0 ]", timeout=timeout)
        log.info("%s: copied directory %s to %s", vm.name, local, dest)
    finally:
        shell.close()


def copy_from(vm: "LegacyVM", remote: str, local: Path, timeout: float) -> None:
    """`remote` (a guest file) to `local` (a file, or into a directory)."""
    target = local / Path(remote).name if local.is_dir() else local
    VM.copy_files_from(vm, remote, str(target), timeout=timeout)
