"""Where the host's bridge has learned a MAC: `bridge fdb`, in this host.

After a migration the destination proves its guest answers from its own
port: the bridge's forwarding table must hold the guest's MAC on the tap of
the destination's QEMU (learned from a frame the guest, or QEMU's announce,
sent through it), not merely be assumed to.  Also: the state of the host's
uplinks to the segment, so a failure can name a lost link.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Optional

from multihost_migration.errors import GuestCheckError


@dataclass(frozen=True)
class FdbEntry:
    mac: str
    port: str          # the bridge port (interface) it was learned on
    master: str
    state: str


def parse_fdb(text: str) -> list[FdbEntry]:
    """`bridge -j fdb show` output: the learned entries of bridge ports
    (the bridge's own and permanent entries left out)."""
    try:
        raw = json.loads(text or "[]")
    except ValueError as err:
        raise GuestCheckError(f"bridge fdb: not JSON: {text[:200]!r}") from err
    entries = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or "master" not in item:
            continue
        if item.get("state") == "permanent" or "self" in (item.get("flags") or []):
            continue
        entries.append(FdbEntry(mac=str(item.get("mac", "")).lower(),
                                port=str(item.get("ifname", "")),
                                master=str(item.get("master", "")),
                                state=str(item.get("state", ""))))
    return entries


def _run(argv: list[str], timeout: float = 10.0) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise GuestCheckError(f"{' '.join(argv)}: {err}") from err
    if proc.returncode != 0:
        raise GuestCheckError(f"{' '.join(argv)} (exit {proc.returncode}): "
                              f"{proc.stderr.strip()}")
    return proc.stdout


def port_of(bridge: str, mac: str) -> Optional[str]:
    """The port of `bridge` on which `mac` is learned now, or None."""
    for entry in parse_fdb(_run(["bridge", "-j", "fdb", "show", "br", bridge])):
        if entry.mac == mac.lower():
            return entry.port
    return None


def wait_port(bridge: str, mac: str, port: str, timeout: float) -> Optional[str]:
    """Poll until `mac` is learned on `port`; the port it is on at the end."""
    deadline = time.monotonic() + timeout
    while True:
        where = port_of(bridge, mac)
        if where == port or time.monotonic() >= deadline:
            return where
        time.sleep(0.05)


def uplinks(bridge: str) -> dict[str, str]:
    """The bridge's ports other than taps (its links to the segment):
    {name: operstate}."""
    out = _run(["ip", "-d", "-j", "link", "show", "master", bridge])
    try:
        links: list[dict[str, Any]] = json.loads(out or "[]")
    except ValueError:
        return {}
    return {str(link.get("ifname")): str(link.get("operstate", "?")) for link in links
            if (link.get("linkinfo") or {}).get("info_kind") != "tun"}
