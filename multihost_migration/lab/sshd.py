"""One real OpenSSH server per lab host.

Each sshd runs inside its host's network namespace and in a private mount
namespace of its own, where /var/lib/virt_test/* are bind mounts of the lab's
shared directory (the "NFS" of a real lab).  /tmp stays the machine's: the
controller may run from a checkout under /tmp, and its python must be
visible to the hosts (job work directories are named per host).  Every process
a client starts over SSH inherits both namespaces: it sees exactly what a
process on a real test host would see.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

from multihost_migration.errors import LabError
from multihost_migration.lab.config import SHARED_SUBDIRS, VIRT_TEST_ROOT
from multihost_migration.lab.netns import entered, run

log = logging.getLogger(__name__)

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
PRIVSEP_DIR = Path("/run/sshd")


def generate_key(path: Path, comment: str) -> None:
    """An ed25519 key pair at `path` (kept if already there)."""
    if path.exists() and path.with_suffix(".pub").exists():
        return
    for stale in (path, path.with_suffix(".pub")):
        stale.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def public_key(path: Path) -> str:
    return path.with_suffix(".pub").read_text().strip()


def write_config(host_dir: Path, address: str, port: int, authorized_keys: Path) -> Path:
    cfg = host_dir / "sshd_config"
    cfg.write_text("\n".join([
        f"ListenAddress {address}:{port}",
        f"HostKey {host_dir / 'ssh_host_ed25519_key'}",
        f"PidFile {host_dir / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "MaxStartups 100:30:200",
        "MaxSessions 50",
        "ClientAliveInterval 15",
        "LogLevel INFO",
        f"Subsystem sftp {SFTP_SERVER}",
        "",
    ]))
    return cfg


def mount_script(shared_dir: Optional[Path], hostname: str) -> str:
    """Shell run in the host's fresh mount and UTS namespaces before exec'ing
    sshd; without `shared_dir` (the client namespace) no shared storage."""
    lines = [
        "set -e",
        f"hostname {shlex.quote(hostname)}",
    ]
    if shared_dir is None:
        return "\n".join(lines)
    lines.append(f"mount -t tmpfs -o mode=0755 mhm-virt-test {VIRT_TEST_ROOT}")
    for sub, mode in SHARED_SUBDIRS.items():
        target = VIRT_TEST_ROOT / sub
        lines.append(f"mkdir -p {target}")
        lines.append(f"mount --bind {shared_dir / sub} {target}")
        if mode == "ro":
            lines.append(f"mount -o remount,bind,ro {target}")
    return "\n".join(lines)


def start(netns: str, hostname: str, host_dir: Path, shared_dir: Optional[Path],
          timeout: float = 10.0) -> int:
    """Start sshd for one host; returns its pid once it accepts connections."""
    cfg = host_dir / "sshd_config"
    script = mount_script(shared_dir, hostname) + (
        f"\nexec {SSHD} -D -f {shlex.quote(str(cfg))} -E {shlex.quote(str(host_dir / 'sshd.log'))}")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    VIRT_TEST_ROOT.mkdir(parents=True, exist_ok=True)
    pidfile = host_dir / "sshd.pid"
    pidfile.unlink(missing_ok=True)
    # setsid --fork: sshd is reparented to init, so whoever started the lab
    # (a short CLI, a long pytest run) never holds it as a zombie.
    with open(host_dir / "start.log", "w") as errlog:
        subprocess.run(
            ["setsid", "--fork", "ip", "netns", "exec", netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog,
            check=True, timeout=10)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        if text.isdigit():
            return int(text)
        time.sleep(0.02)
    raise LabError(f"sshd in {netns} wrote no pid file within {timeout:.0f} s: "
                   f"{(host_dir / 'start.log').read_text().strip()} "
                   f"{_log_tail(host_dir / 'sshd.log')}")


def _log_tail(path: Path) -> str:
    return path.read_text().strip()[-500:] if path.exists() else ""


def wait_listening(netns: str, address: str, port: int, pid: int,
                   timeout: float = 10.0) -> None:
    """Wait until sshd answers with its banner, or raise with its log."""
    deadline = time.monotonic() + timeout
    last_err = ""
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        try:
            with entered(netns):
                sock = socket.create_connection((address, port), timeout=1.0)
            with sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError as err:
            last_err = str(err)
        time.sleep(0.05)
    raise LabError(f"sshd in {netns} did not come up at {address}:{port} within "
                   f"{timeout:.0f} s ({last_err or 'process exited'})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
