"""Thin, typed wrappers over iproute2 network namespaces.

Everything the lab does to the network goes through `ip -n NS ...`, so that
no command ever runs against the root namespace by accident.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import threading
import time
from typing import Iterator, Sequence

from multihost_migration.errors import LabError

log = logging.getLogger(__name__)

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000


def run(cmd: Sequence[str], timeout: float = 30.0, check: bool = True,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a host command with a deadline; raise LabError with its output on failure."""
    log.debug("run: %s", " ".join(cmd))
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True,
                              timeout=timeout, input=input_text,
                              stdin=None if input_text is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise LabError(f"command timed out after {timeout:.0f} s: {' '.join(cmd)}") from err
    except FileNotFoundError as err:
        raise LabError(f"command not found: {cmd[0]} (run scripts/setup.sh)") from err
    if check and proc.returncode != 0:
        out = (proc.stderr or proc.stdout).strip()
        raise LabError(f"command failed (exit {proc.returncode}): {' '.join(cmd)}: {out}")
    return proc


def list_netns() -> list[str]:
    """Names of all named network namespaces."""
    if not os.path.isdir(NETNS_DIR):
        return []
    return sorted(os.listdir(NETNS_DIR))


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def add(name: str) -> None:
    run(["ip", "netns", "add", name])
    ip(name, "link", "set", "lo", "up")


def ip(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`ip -n NS ARGS`: an iproute2 command confined to namespace `ns`."""
    return run(["ip", "-n", ns, *args], check=check)


def pids(name: str) -> list[int]:
    """PIDs of processes whose network namespace is `name`."""
    proc = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def kill_all(name: str, timeout: float = 10.0) -> None:
    """SIGTERM every process in namespace `name`, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        victims = pids(name)
        if not victims:
            return
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout / 2
        while time.monotonic() < deadline and pids(name):
            time.sleep(0.05)
    left = pids(name)
    if left:
        raise LabError(f"processes {left} in namespace {name} survived SIGKILL")


def delete(name: str) -> None:
    kill_all(name)
    run(["ip", "netns", "delete", name], check=False)
    if exists(name):
        # A stale mount point left behind by a crashed `ip netns add`.
        run(["umount", "-l", os.path.join(NETNS_DIR, name)], check=False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(NETNS_DIR, name))


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_setns_lock = threading.Lock()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise LabError(f"setns failed: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside network namespace `name`.

    Network namespaces are per thread: sockets created inside the body stay in
    `name` for their whole life, so a controller in the root namespace can hold
    connections into the lab without the root namespace gaining any route.
    """
    path = os.path.join(NETNS_DIR, name)
    if not os.path.exists(path):
        raise LabError(f"network namespace {name} does not exist (is the lab up?)")
    with _setns_lock:
        own = os.open(f"/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)
