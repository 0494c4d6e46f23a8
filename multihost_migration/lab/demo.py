"""The main job on the embedded lab: `make demo`.

Brings the lab up (if needed), builds the guest (if needed), runs
`autotest-remote -m h1,h2 control.srv` from the controller namespace against
the two lab hosts, writes results under results/<timestamp>/ with a
results/latest link, and prints the path, the verdict and where the time went.
Exit status 0 only if the verdict is GOOD.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from multihost_migration.lab import lab
from multihost_migration.lab.config import LabConfig
from multihost_migration.lab.inventory import Inventory
from multihost_migration.server.wheelhouse import build_wheelhouse, default_cache_dir

ROOT = Path(__file__).resolve().parents[2]


def autotest_remote_argv(inv: Inventory, results: Path, control: Path,
                         control_args: list[str], hosts: Optional[list[str]] = None,
                         install: bool = False) -> list[str]:
    """The command line that runs a control file from the lab's controller.
    With `install` the suite is installed on the hosts from a wheelhouse, as
    on real hosts; else the hosts use this checkout's python (they share its
    filesystem)."""
    binary = shutil.which("autotest-remote", path=str(Path(sys.executable).parent)) \
        or "autotest-remote"
    machines = ",".join(hosts or [h.name for h in inv.hosts[:2]])
    return ["ip", "netns", "exec", inv.controller.netns, binary, "-m", machines,
            "-r", str(results), "--ssh-key", inv.ssh.key, "--known-hosts", inv.ssh.known_hosts,
            "--ssh-user", inv.ssh.user,
            *([] if install else ["--remote-python", inv.python or sys.executable]),
            str(control), f"accel={inv.accel}", *control_args]


def run_demo(results_root: Path, control_args: list[str], timeout: float = 1200.0,
             cfg_file: Optional[Path] = None) -> int:
    t0 = time.monotonic()
    cfg = LabConfig()
    subprocess.run([sys.executable, "-m", "multihost_migration.lab.cli", "lab", "up"],
                   check=True, timeout=600)
    inv = lab.load_inventory(cfg.state_dir)
    # The wheelhouse is built here, in the root namespace (pip may need the
    # network); autotest-remote in the lab's controller finds it cached.
    build_wheelhouse(default_cache_dir())
    t_lab = time.monotonic() - t0
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    results = (results_root / stamp).resolve()
    control = ROOT / "control.srv"
    argv = autotest_remote_argv(inv, results, control, control_args, install=True)
    if cfg_file is not None:
        at = argv.index(str(control))
        argv[at:at] = ["--cfg", str(cfg_file.resolve())]
    print("running:", " ".join(argv), flush=True)
    t1 = time.monotonic()
    proc = subprocess.run(argv, timeout=timeout)
    t_run = time.monotonic() - t1
    latest = results_root / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(stamp)
    print(f"\nlab + guest + wheelhouse ready: {t_lab:.1f} s; autotest-remote: {t_run:.1f} s")
    _print_migration_times(results)
    leftovers = lab.lab_qemu_pids()
    if leftovers:
        print(f"WARNING: QEMU processes left running: {leftovers}")
        return 1
    print(f"results: {results} (also {latest})")
    return proc.returncode


def _print_migration_times(results: Path) -> None:
    path = results / "results.json"
    if not path.exists():
        return
    for test in json.loads(path.read_text()).get("tests", []):
        for mig in test.get("migrations", []):
            for vm, stats in (mig.get("stats") or {}).items():
                print(f"  {test['name']} {mig['id']} {vm} {mig['src']}->{mig['dst']}: "
                      f"{stats.get('status')} total {stats.get('total_time_ms')} ms, "
                      f"downtime {stats.get('downtime_ms')} ms, "
                      f"{stats.get('transferred')} bytes")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="mhm-demo", description=__doc__)
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--cfg", type=Path, default=None,
                   help="cfg file instead of cfg/multi-host-tests.cfg "
                        "(cfg/scenario-set.cfg: every scenario once)")
    p.add_argument("--timeout", type=float, default=1200.0,
                   help="seconds autotest-remote may take (default 1200)")
    p.add_argument("control_args", nargs="*", help="extra key=value / 'only X' arguments")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: must run as root (the lab uses network namespaces)", file=sys.stderr)
        return 2
    args.results.mkdir(parents=True, exist_ok=True)
    return run_demo(args.results, args.control_args, args.timeout, args.cfg)


if __name__ == "__main__":
    sys.exit(main())
