"""Serial logs of a booting guest: read, wait for a pattern, summarise;
why a boot did not finish.  Shared by early_boot and reboot.

Not a scenario itself (no `run`).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from multihost_migration.errors import LoginError
from multihost_migration.guest.console import ConsoleSession
from multihost_migration.migration import MigrationData
from multihost_migration.qemu.vm import VM
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

#: Printed by getty: the boot is over (the serial log also holds "login: root").
DEFAULT_BOOT_DONE = r"login:"
_KERNEL_TS = re.compile(r"^\[\s*(\d+\.\d+)\]", re.M)
_KERNEL_FAULT = re.compile(r"(?:BUG: |Oops: |Kernel panic|general protection fault)[^\n]*")
#: Dirty-sync passes of a precopy that stopped the guest right after the bulk
#: pass: setup, after the bulk pass, final.
LIVE_SYNC_PASSES = 3
#: CSI sequences, and the two-byte ESC sequences SeaBIOS prints (ESC c, ...).
_ESCAPES = re.compile(r"\x1b(?:\[[0-9;?]*[A-Za-z]|[@-Z\\-_c])")
SERIAL_POLL = 0.1


# -- serial logs ------------------------------------------------------------


def read_log(path: Path, offset: int = 0) -> str:
    """The text of a serial log from byte `offset` on ("" if there is none)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def clean(text: str) -> str:
    """Serial output without CRs and terminal escapes, for messages."""
    return _ESCAPES.sub("", text).replace("\r", "")


def tail(text: str, lines: int = 4) -> str:
    kept = [line for line in clean(text).splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def wait_for_serial(vm: VM, pattern: str, timeout: float, offset: int = 0) -> Optional[float]:
    """Seconds until `pattern` (regex) shows in `vm`'s serial log after byte
    `offset`, or None if it did not within `timeout` (or QEMU exited)."""
    regex = re.compile(pattern)
    start = time.monotonic()
    while True:
        if regex.search(read_log(vm.serial_log_path, offset)):
            return time.monotonic() - start
        if time.monotonic() - start >= timeout or not vm.is_alive():
            return None
        time.sleep(SERIAL_POLL)


def serial_summary(text: str, done_pattern: str = DEFAULT_BOOT_DONE,
                   marker: str = "") -> dict[str, Any]:
    """What a serial log shows, as JSON-able data for the sync server:
    `booted` (the boot-done pattern is there), `marker` (the marker regex is
    there; False when no marker is given), the first and last kernel
    timestamps, and its last lines."""
    stamps = [float(value) for value in _KERNEL_TS.findall(clean(text))]
    return {"booted": bool(re.search(done_pattern, text)),
            "marker": bool(marker) and bool(re.search(marker, text)),
            "first_ts": stamps[0] if stamps else None,
            "last_ts": stamps[-1] if stamps else None,
            "bytes": len(text), "tail": tail(text)}


def boot_failure(where: str, console: str, timeout: float, passes: Optional[int]) -> str:
    """Why a boot did not finish (no login within `timeout`), from the
    console: the kernel's oops line if there is one."""
    fault = _KERNEL_FAULT.search(clean(console))
    what = (f"the guest kernel crashed: {fault.group(0).strip()!r}" if fault else
            f"no login within {timeout:.0f} s (console: {tail(console)!r})")
    message = f"{where}: the boot did not finish here: {what}"
    if passes is not None and passes > LIVE_SYNC_PASSES:
        message += (f"; the migration took {passes} dirty-sync passes: under TCG more "
                    f"than {LIVE_SYNC_PASSES} can lose guest writes (QEMU 7.2, see "
                    f"migration_early_boot)")
    return message


def login_after_boot(vm: VM, mig_data: MigrationData, timeout: float,
                     where: str) -> ConsoleSession:
    """Log in once the boot is over; TestFail (boot_failure) if it never is."""
    try:
        return vm.wait_for_login(timeout=timeout)
    except LoginError as err:
        passes = (mig_data.stats.get(vm.name) or {}).get("passes")
        raise TestFail(boot_failure(where, read_log(vm.serial_log_path), timeout,
                                    passes)) from err


def summaries(vms: Sequence[VM], done_pattern: str, marker: str,
              offsets: Optional[dict[str, int]] = None) -> dict[str, dict[str, Any]]:
    """serial_summary of each VM's log (from its offset, default 0)."""
    offsets = offsets or {}
    return {vm.name: serial_summary(read_log(vm.serial_log_path, offsets.get(vm.name, 0)),
                                    done_pattern, marker) for vm in vms}
