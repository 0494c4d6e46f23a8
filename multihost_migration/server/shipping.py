"""What a job carries to its hosts besides its params: the user's scenarios.

A plain directory of scenario modules travels as its *.py files, into
WORKDIR/scenarios.  A test-provider checkout (tp-qemu style: a `provider/`
package or `*/tests/` directories, with their deps and cfg beside them)
travels whole, `.git` and `__pycache__` left out, as one archive unpacked
into WORKDIR/scenarios-N: its packages then import on hosts that do not
share the controller's filesystem (in the lab they do, and the copy is
used all the same).
"""

from __future__ import annotations

import shlex
import tarfile
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from multihost_migration.errors import ConfigError
from multihost_migration.remote import RemoteHost

_LEFT_OUT = {".git", "__pycache__"}


def is_provider_checkout(directory: Path) -> bool:
    """tp-qemu style: a `provider/` package or `*/tests/` directories."""
    return (directory / "provider").is_dir() or any(directory.glob("*/tests"))


def _target(workdir: str, index: int, directory: Path) -> str:
    return (f"{workdir}/scenarios-{index}" if is_provider_checkout(directory)
            else f"{workdir}/scenarios")


def scenario_targets(local_dirs: Sequence[str], workdir: str) -> list[str]:
    """Where each of `local_dirs` lands on a host (the hosts' scenario_dirs)."""
    out: list[str] = []
    for index, directory in enumerate(local_dirs):
        target = _target(workdir, index, Path(directory))
        if target not in out:
            out.append(target)
    return out


def ship_scenarios(remote: RemoteHost, local_dirs: Sequence[str], workdir: str) -> None:
    """Copy `local_dirs` to the host, each where scenario_targets() says."""
    remote.run(f"mkdir -p {shlex.quote(workdir)}/scenarios", timeout=30)
    for index, directory in enumerate(local_dirs):
        path = Path(directory)
        if not path.is_dir():
            raise ConfigError(f"scenario_dirs: {path} is not a directory")
        if is_provider_checkout(path):
            _ship_tree(remote, path, _target(workdir, index, path))
            continue
        for module in sorted(path.glob("*.py")):
            remote.put(module, f"{workdir}/scenarios/{module.name}")


def _without_clutter(info: tarfile.TarInfo) -> Optional[tarfile.TarInfo]:
    return None if _LEFT_OUT & set(Path(info.name).parts) else info


def _ship_tree(remote: RemoteHost, path: Path, target: str) -> None:
    """The checkout at `path` as one archive, unpacked at `target`."""
    quoted = shlex.quote(target)
    with tempfile.TemporaryDirectory(prefix="mhm-ship-") as tmp:
        archive = Path(tmp) / "checkout.tgz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(str(path), arcname=".", filter=_without_clutter)
        remote.run(f"mkdir -p {quoted}", timeout=30)
        remote.put(archive, f"{target}.tgz")
    remote.run(f"tar -xzf {quoted}.tgz -C {quoted} && rm -f {quoted}.tgz", timeout=300)
