"""Issue #21 on the lab: inventories, shards and their merge, host requirements.

The quick test (make test) runs the default two-host lab from an Ansible
inventory and checks a requirement no host meets is TEST_NA.  The slow
ones (make test-full) take the lab to 8 hosts (4 pairs) and put it back
to 2 at the end, as test_endurance_load's four-pairs test does:
the same pairs and verdicts from `-m`, an Ansible inventory, a tmt
topology, and from `--shard 1/2` + `--shard 2/2` run at once and merged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from multihost_migration.lab import lab
from multihost_migration.lab.config import LabConfig
from multihost_migration.lab.demo import ROOT, autotest_remote_argv
from multihost_migration.lab.inventory import Inventory
from tests.lab.test_autotest_remote import TEST_HOSTS, guest_lab  # noqa: F401

SCENARIO = ["only tcp", "only migrate_multi_host"]


def ansible_inventory(inv: Inventory, hosts: list[str], path: Path) -> Path:
    """The lab's hosts as an Ansible YAML inventory (addresses, user, key)."""
    lines = ["all:", "  vars:", f"    ansible_user: {inv.ssh.user}",
             f"    ansible_ssh_private_key_file: {inv.ssh.key}", "  hosts:"]
    for host in inv.hosts:
        if host.name in hosts:
            lines += [f"    {host.name}:", f"      ansible_host: {host.address}",
                      "      ansible_port: 22"]
    path.write_text("\n".join(lines) + "\n")
    return path


def tmt_topology(inv: Inventory, hosts: list[str], path: Path) -> Path:
    """The lab's hosts as tmt's topology file (guests and roles)."""
    lines = ["guests:"]
    for host in inv.hosts:
        if host.name in hosts:
            lines += [f"  {host.name}:", f"    name: {host.name}", "    role: host",
                      f"    hostname: {host.address}"]
    lines += ["roles:", "  host:", *[f"    - {h}" for h in hosts]]
    path.write_text("\n".join(lines) + "\n")
    return path


def command(inv: Inventory, results: Path, hosts: list[str], pool: tuple[str, ...],
            *args: str, options: tuple[str, ...] = ()) -> list[str]:
    """autotest-remote from the lab controller under TCG; `pool` replaces -m,
    `options` go before the control file, `args` after it."""
    control = ROOT / "control.srv"
    argv = autotest_remote_argv(inv, results, control, [*SCENARIO, *args], hosts=hosts)
    argv[argv.index(f"accel={inv.accel}")] = "accel=tcg"
    at = argv.index(str(control))
    argv[at:at] = list(options)
    if pool:
        at = argv.index("-m")
        argv[at:at + 2] = list(pool)
    return argv


def outcome(results: Path) -> list[tuple[str, str, str, int]]:
    """(group, test, verdict, migrations) of every test, sorted."""
    tests = json.loads((results / "results.json").read_text())["tests"]
    return sorted((t["group"], t["name"], t["status"], len(t["migrations"])) for t in tests)


def run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def test_ansible_inventory_and_a_requirement_no_host_meets(
        guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    hosts = TEST_HOSTS
    path = ansible_inventory(guest_lab, hosts, tmp_path / "inventory.yml")
    proc = run(command(guest_lab, tmp_path / "r", hosts, ("-M", str(path))))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    found = outcome(tmp_path / "r")
    assert (f"multihost_migration.{'_'.join(hosts)}", "migrate_multi_host.tcp.JeOS.mhm",
            "GOOD", 1) in found
    assert {verdict for _, _, verdict, _ in found} == {"GOOD"}
    job = json.loads((tmp_path / "r" / "results.json").read_text())["job"]
    assert len(job["identity"]) == 64 and job["shard"] is None

    proc = run(command(guest_lab, tmp_path / "na", hosts, ("-M", str(path)),
                       "require_cpu_flags = no_such_flag", "require_mem_mib = 64"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "nothing ran" in proc.stdout
    tests = json.loads((tmp_path / "na" / "results.json").read_text())["tests"]
    assert {t["status"] for t in tests} == {"TEST_NA"}
    (test,) = [t for t in tests if t["name"] == "migrate_multi_host.tcp.JeOS.mhm"]
    assert test["reason"].startswith("no pair of hosts meets require_cpu_flags = no_such_flag")
    assert f"{hosts[0]}: CPU lacks no_such_flag" in test["reason"]
    assert "MiB of memory" not in test["reason"]          # 64 MiB: every host has it


@pytest.fixture(scope="module")
def eight_hosts() -> Iterator[Inventory]:
    """The lab with 8 hosts for the module; back to 2 hosts at its end."""
    subprocess.run([sys.executable, "-m", "multihost_migration.lab.cli", "guest", "build"],
                   check=True, timeout=300)
    subprocess.run([sys.executable, "-m", "multihost_migration.lab.cli", "lab", "up",
                    "--hosts", "8"], check=True, timeout=600)
    try:
        yield lab.load_inventory()
    finally:
        lab.up(LabConfig())


@pytest.fixture(scope="module")
def baseline(eight_hosts: Inventory, tmp_path_factory: pytest.TempPathFactory
             ) -> list[tuple[str, str, str, int]]:
    """One unsharded run with -m h1,...,h8."""
    results = tmp_path_factory.mktemp("baseline") / "r"
    hosts = [h.name for h in eight_hosts.hosts]
    proc = run(command(eight_hosts, results, hosts, ()))
    assert proc.returncode == 0, proc.stdout[-3000:]
    found = outcome(results)
    assert [g for g, *_ in found] == ["multihost_migration.h1_h2", "multihost_migration.h3_h4",
                                      "multihost_migration.h5_h6", "multihost_migration.h7_h8"]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ansible", "tmt"])
def test_eight_hosts_from_an_inventory_as_with_m(eight_hosts: Inventory, kind: str,
                                                 baseline: list[tuple[str, str, str, int]],
                                                 tmp_path: Path) -> None:
    hosts = [h.name for h in eight_hosts.hosts]
    if kind == "ansible":
        pool = ("-M", str(ansible_inventory(eight_hosts, hosts, tmp_path / "inv.yml")))
    else:
        pool = ("--topology", str(tmt_topology(eight_hosts, hosts, tmp_path / "topo.yaml")))
    proc = run(command(eight_hosts, tmp_path / "r", hosts, pool))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert outcome(tmp_path / "r") == baseline


@pytest.mark.slow
def test_two_shards_at_once_merged_as_one_run(eight_hosts: Inventory,
                                              baseline: list[tuple[str, str, str, int]],
                                              tmp_path: Path) -> None:
    hosts = [h.name for h in eight_hosts.hosts]
    procs = [subprocess.Popen(command(eight_hosts, tmp_path / f"s{i}", hosts, (),
                                      options=("--shard", f"{i}/2")),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (1, 2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    shard_hosts = [set(json.loads((tmp_path / f"s{i}" / "results.json").read_text())
                       ["tests"][0]["hosts"]) for i in (1, 2)]
    groups = [{g for g, *_ in outcome(tmp_path / f"s{i}")} for i in (1, 2)]
    assert groups[0].isdisjoint(groups[1]) and shard_hosts[0].isdisjoint(shard_hosts[1])
    merged = tmp_path / "merged"
    proc = run([sys.executable, "-m", "multihost_migration.report.cli", "merge",
                str(tmp_path / "s1"), str(tmp_path / "s2"), "-o", str(merged)])
    assert proc.returncode == 0, proc.stderr
    assert outcome(merged) == baseline
    assert (merged / "junit.xml").is_file() and (merged / "report.html").is_file()
