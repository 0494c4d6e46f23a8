"""Each lab host's QEMU: `mhm lab up --qemu h1=7.2,h2=10.0`.

A lab host's default QEMU is what `qemu-system-x86_64` is on that host, as
on a real host where an upgrade installed another version: inside the
host's own mount namespace (the one its sshd and every process it starts
live in), /usr/bin/qemu-system-x86_64 is bind-mounted over by the chosen
prefix's binary (a wrapper that points QEMU at its own data files).  The
machine's root mount namespace and its system QEMU are never touched.  A
cfg's `qemu_binary` / `qemu_binary_hostN` with an absolute path still picks
any installed QEMU explicitly.

Versions: `system` (or the system QEMU's own version, e.g. 7.2) and every
prefix /opt/mhm/qemu-VERSION that scripts/setup.sh installed.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from multihost_migration.errors import LabError

SYSTEM_BINARY = "/usr/bin/qemu-system-x86_64"
PREFIX_ROOT = Path(os.environ.get("MHM_QEMU_PREFIXES", "/opt/mhm"))
SYSTEM = "system"
_VERSION_RE = re.compile(r"QEMU emulator version (\d+\.\d+(?:\.\d+)?)")


def parse_choice(text: str, hosts: Sequence[str]) -> dict[str, str]:
    """`h1=7.2,h2=10.0` -> {"h1": "7.2", "h2": "10.0"}; hosts not named get
    nothing (their system QEMU)."""
    choice: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, sep, version = item.partition("=")
        host, version = host.strip(), version.strip()
        if not sep or not host or not version:
            raise LabError(f"--qemu {text!r}: expected HOST=VERSION[,HOST=VERSION...], "
                           f"e.g. h1=7.2,h2=10.0; got {item!r}")
        if host not in hosts:
            raise LabError(f"--qemu {text!r}: no lab host {host!r} (hosts: "
                           f"{', '.join(hosts)})")
        if host in choice:
            raise LabError(f"--qemu {text!r}: {host} named twice")
        choice[host] = version
    return choice


def installed(prefix_root: Path = PREFIX_ROOT) -> dict[str, str]:
    """version -> binary of every QEMU prefix scripts/setup.sh installed."""
    out = {}
    for binary in sorted(prefix_root.glob("qemu-*/bin/qemu-system-x86_64")):
        out[binary.parents[1].name[len("qemu-"):]] = str(binary)
    return out


def binary_for(version: str, system_version: str,
               prefixes: Mapping[str, str]) -> str:
    """The binary a host runs for `version`: the system's when it is that
    version (`7.2` matches 7.2.22), else an installed prefix's."""
    if version == SYSTEM or system_version == version or \
            system_version.startswith(version + "."):
        return SYSTEM_BINARY
    if version in prefixes:
        return prefixes[version]
    have = ", ".join([f"{system_version} (system)"] + sorted(prefixes))
    raise LabError(f"no QEMU {version} on this machine (have {have}); "
                   f"scripts/setup.sh installs 10.0 in {PREFIX_ROOT}/qemu-10.0")


def version_of(binary: str, timeout: float = 30.0) -> str:
    """'7.2.22': what `binary --version` says."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LabError(f"{binary} --version: {err}") from err
    match = _VERSION_RE.search(out.stdout)
    if out.returncode != 0 or not match:
        raise LabError(f"{binary} --version failed ({out.returncode}): "
                       f"{(out.stdout + out.stderr).strip()[-300:]}")
    return match.group(1)


def mask_script(binary: str) -> str:
    """Shell run in a host's mount namespace: /usr/bin/qemu-system-x86_64
    becomes `binary` (the system's again when `binary` is the system's)."""
    target = shlex.quote(SYSTEM_BINARY)
    lines = [f"n=0; while mountpoint -q {target} && [ $n -lt 8 ]; do "
             f"umount {target}; n=$((n+1)); done"]
    if binary != SYSTEM_BINARY:
        lines.append(f"mount --bind {shlex.quote(binary)} {target}")
    return "\n".join(lines)


def apply(sshd_pid: int, binary: str, timeout: float = 30.0) -> None:
    """Make `binary` the default QEMU inside the mount namespace of the lab
    host whose sshd is `sshd_pid`."""
    argv = ["nsenter", "-t", str(sshd_pid), "-m", "--", "sh", "-ec", mask_script(binary)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LabError(f"cannot set the QEMU of the host of sshd {sshd_pid}: {err}") from err
    if result.returncode != 0:
        raise LabError(f"cannot set the QEMU of the host of sshd {sshd_pid} to {binary}: "
                       f"{result.stderr.strip()[-300:]}")
