"""Run legacy (tp-qemu style) tests on the lab: a user cfg of a few lines
around a legacy checkout, autotest-remote from the lab's controller, the
verdict of every test printed.  Nothing is fetched: the checkout is a local
directory.

    python -m multihost_migration.lab.legacy_run CHECKOUT RESULTS [FILTER...]

FILTER lines (`only cancel_with_delay`) narrow the legacy cfg further.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from multihost_migration.lab import lab
from multihost_migration.lab.config import LabConfig
from multihost_migration.lab.demo import ROOT, autotest_remote_argv
from multihost_migration.status import StatusEntry, parse

VERDICTS = ("GOOD", "WARN", "FAIL", "ERROR", "TEST_NA", "ABORT")
#: What the lab's tiny guest runs instead of what tp-qemu's multi_host.cfg
#: asks (tcpdump, dhclient, stress): guest-side commands only.
GUEST_COMMANDS = (
    'migration_bg_command = "cd /tmp; nohup sleep 100000 >/dev/null 2>&1 &"',
    "migration_bg_check_command = killall -0 sleep",
    "migration_bg_kill_command = killall -9 sleep",
    "regain_ip_cmd = true",
    'stress_cmd = "mhm-memdirty 160 >/dev/null 2>&1 &"',
    "stress_kill_cmd = killall -9 mhm-memdirty",
)


def user_cfg(checkout: Path, filters: Sequence[str]) -> str:
    """The user's cfg: ours for legacy tests, the checkout's as it is."""
    legacy = checkout / "multi_host_migration" / "tests" / "cfg" / "multi_host.cfg"
    return "\n".join([f"include {ROOT / 'cfg' / 'legacy.cfg'}", f"include {legacy}",
                      f"scenario_dirs = {checkout}", *GUEST_COMMANDS,
                      "only pc", "only vhost_src_no_dst_no", *filters, ""])


def is_test_verdict(entry: StatusEntry) -> bool:
    """A test's verdict line (not a host's, the group's or the job's)."""
    return (entry.status in VERDICTS and "/" not in entry.subdir and entry.subdir != "----"
            and not entry.subdir.startswith("multihost_migration."))


def run(checkout: Path, results: Path, filters: Sequence[str],
        timeout: float = 3600.0) -> tuple[int, list[tuple[str, str, str]]]:
    """autotest-remote on the lab; (exit status, [(test, verdict, reason)])."""
    results.parent.mkdir(parents=True, exist_ok=True)
    cfg = results.parent / f"{results.name}.cfg"
    cfg.write_text(user_cfg(checkout.resolve(), filters))
    inv = lab.load_inventory(LabConfig().state_dir)
    argv = autotest_remote_argv(inv, results, ROOT / "control.srv", [])
    argv[argv.index(f"accel={inv.accel}")] = "accel=tcg"
    at = argv.index(str(ROOT / "control.srv"))
    argv[at:at] = ["--cfg", str(cfg), "--overwrite"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    verdicts = []
    log = results / "status.log"
    for entry in parse(log.read_text()) if log.exists() else []:
        if is_test_verdict(entry):
            verdicts.append((entry.operation, entry.status, entry.reason))
    if not verdicts:
        verdicts.append(("(run)", f"exit {proc.returncode}", proc.stdout[-2000:]))
    return proc.returncode, verdicts


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="legacy_run")
    p.add_argument("checkout", type=Path)
    p.add_argument("results", type=Path)
    p.add_argument("filters", nargs="*")
    args = p.parse_args(argv)
    code, verdicts = run(args.checkout, args.results, args.filters)
    for test, status, reason in verdicts:
        print(f"{status:8} {test}: {reason.splitlines()[0] if reason else ''}")
    return code


if __name__ == "__main__":
    sys.exit(main())
