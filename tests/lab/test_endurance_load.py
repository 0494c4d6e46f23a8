"""Endurance and load on the lab (make test-full): long, bounded, self-stopping."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from multihost_migration.lab import lab, netns
from multihost_migration.lab.config import LabConfig
from multihost_migration.lab.demo import ROOT, autotest_remote_argv
from multihost_migration.lab.inventory import Inventory
from multihost_migration.status import parse
from tests.lab.test_autotest_remote import guest_lab, run_autotest_remote  # noqa: F401
from tests.lab.test_scenarios import write_cfg

pytestmark = pytest.mark.slow


def host_resources(inv: Inventory) -> dict[str, tuple[int, int, int]]:
    """Per host: processes, open file descriptors, listening TCP ports."""
    out = {}
    for host in inv.hosts:
        pids = netns.pids(host.netns)
        fds = 0
        for pid in pids:
            try:
                fds += len(list(Path(f"/proc/{pid}/fd").iterdir()))
            except OSError:
                pass
        ports = subprocess.run(["ip", "netns", "exec", host.netns, "ss", "-tlnH"],
                               capture_output=True, text=True).stdout.strip().splitlines()
        out[host.name] = (len(pids), fds, len(ports))
    return out


def test_ping_pong_100_round_trips(guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    before = host_resources(guest_lab)
    cfg = write_cfg(tmp_path, "only tcp", "only integrity.ping_pong")
    proc = run_autotest_remote(guest_lab, tmp_path / "r", "migrate_count=200",
                               options=("--cfg", str(cfg)), timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:]
    test = json.loads((tmp_path / "r" / "results.json").read_text())["tests"][0]
    assert len(test["migrations"]) == 200
    assert all(s["status"] == "completed" for m in test["migrations"]
               for s in m["stats"].values())
    logs = "".join(p.read_text() for p in Path(test["logdir"]).glob("h*/debug/client.INFO"))
    assert logs.count("memory OK") == 200 and "BAD" not in logs
    assert host_resources(guest_lab) == before


def test_eight_guests_migrate_at_once(guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    cfg = write_cfg(tmp_path, "only tcp", "only migrate_multi_host",
                    "vms = vm1 vm2 vm3 vm4 vm5 vm6 vm7 vm8", "mem = 128")
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:]
    test = json.loads((tmp_path / "r" / "results.json").read_text())["tests"][0]
    stats = test["migrations"][0]["stats"]
    assert sorted(stats) == [f"vm{i}" for i in range(1, 9)]
    assert all(s["status"] == "completed" for s in stats.values())


def test_four_pairs_in_parallel(guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    subprocess.run([sys.executable, "-m", "multihost_migration.lab.cli", "lab", "up",
                    "--hosts", "8"], check=True, timeout=600)
    try:
        inv = lab.load_inventory()
        hosts = [h.name for h in inv.hosts]
        argv = autotest_remote_argv(inv, tmp_path / "r", ROOT / "control.srv",
                                    ["only migrate_multi_host"], hosts=hosts)
        argv[argv.index(f"accel={inv.accel}")] = "accel=tcg"
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=1500)
        assert proc.returncode == 0, proc.stdout[-3000:]
        entries = parse((tmp_path / "r" / "status.log").read_text())
        groups = [e.subdir for e in entries if e.indent == 1 and e.status == "END GOOD"]
        assert sorted(groups) == ["multihost_migration.h1_h2", "multihost_migration.h3_h4",
                                  "multihost_migration.h5_h6", "multihost_migration.h7_h8"]
    finally:
        lab.up(LabConfig())
