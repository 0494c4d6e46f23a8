"""The guest network on the lab: the segment, a migration measured from the
client, and a destination cut from the segment (issue #19)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from multihost_migration.lab import guestnet, lab
from multihost_migration.lab.inventory import Inventory
from tests.lab.test_autotest_remote import (TEST_HOSTS, guest_lab,  # noqa: F401
                                            run_autotest_remote)
from tests.lab.test_scenarios import write_cfg


def in_ns(ns: str, *cmd: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True,
                          text=True, timeout=30, check=True).stdout


def test_segment_spans_the_hosts_and_the_client(inventory: Inventory) -> None:
    net = inventory.guest_net
    assert net is not None and net.subnet == "198.19.0.0/24"
    assert net.client.netns == "mhm-client" and net.client_address == "198.19.0.2"
    for host in inventory.hosts:
        assert f"{net.host_addresses[host.name]}/24" in in_ns(host.netns, "ip", "-br", "addr",
                                                              "show", net.bridge)
        assert guestnet.uplink_state(host.netns) == "UP"
    # the client answers over SSH on the lab network (hosts reach it so)
    out = in_ns(inventory.hosts[0].netns, "ssh", "-i", inventory.ssh.key, "-o",
                f"UserKnownHostsFile={inventory.ssh.known_hosts}", "-o", "BatchMode=yes",
                f"root@{net.client.address}", "ip -br addr show eth1")
    assert "198.19.0.2/24" in out
    assert lab.status_problems(inventory) == []


def test_unplug_and_replug_a_host(inventory: Inventory) -> None:
    guestnet.unplug(inventory, "h2")
    try:
        assert guestnet.unplugged(inventory) == ["h2"]
        assert lab.status_problems(inventory) == []   # a fault, not a broken lab
    finally:
        guestnet.replug(inventory, "h2")
    assert guestnet.unplugged(inventory) == []


def network_records(results: Path) -> list[dict[str, object]]:
    test = json.loads((results / "results.json").read_text())["tests"][0]
    return [st for m in test["migrations"] for st in m["stats"].values()]


def test_migration_measured_from_the_client(guest_lab: Inventory,  # noqa: F811
                                            tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, "only network.virtio_net", "migrate_count = 2")
    proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    records = network_records(tmp_path / "r")
    assert len(records) == 2
    for st, dst in zip(records, [TEST_HOSTS[1], TEST_HOSTS[0]]):
        net = st["network"]
        assert isinstance(net, dict)
        assert 0 < net["longest_gap_ms"] < 10_000 and net["sent"] > 0
        assert net["tcp_alive_after"] is True
        assert net["fdb"]["host"] == dst and net["fdb"]["fdb_on_tap"] is True
    dst_log = (tmp_path / "r").glob(f"**/{TEST_HOSTS[1]}/debug/client.DEBUG")
    text = next(dst_log).read_text()
    assert "logged in over the network" in text and "copied" in text


def test_destination_cut_from_the_segment_fails_naming_it(guest_lab: Inventory,  # noqa: F811
                                                          tmp_path: Path) -> None:
    cfg = write_cfg(tmp_path, "only tcp", "only integrity.once", "guest_network = yes",
                    "netcheck_recover_timeout = 3")
    guestnet.unplug(guest_lab, TEST_HOSTS[1])
    try:
        proc = run_autotest_remote(guest_lab, tmp_path / "r", options=("--cfg", str(cfg)),
                                   timeout=600)
    finally:
        guestnet.replug(guest_lab, TEST_HOSTS[1])
    assert proc.returncode == 1, proc.stdout[-3000:]
    status = (tmp_path / "r" / "status.log").read_text()
    assert "FAIL" in status and "guest network lost" in status, status[-3000:]
    assert "link to the guest segment: gseg is DOWN" in status
