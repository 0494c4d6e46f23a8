"""The lab's guest segment: address plan, validation, inventory round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihost_migration.errors import LabError
from multihost_migration.lab import guestnet
from multihost_migration.lab.config import LabConfig
from multihost_migration.lab.inventory import Inventory, LabHost, SshAccess


def test_address_plan() -> None:
    cfg = LabConfig(hosts=3)
    assert cfg.address("client") == "198.18.0.2"
    assert cfg.segment_address("client") == "198.19.0.2"
    assert [cfg.segment_address(h) for h in cfg.host_names()] == [
        "198.19.0.11", "198.19.0.12", "198.19.0.13"]


@pytest.mark.parametrize("subnet, match", [
    ("198.18.0.0/23", "overlaps the lab subnet"),
    ("198.19.0.0/25", "too small"),
    ("nonsense", "not an IPv4 network"),
])
def test_bad_guest_subnet_is_refused(subnet: str, match: str) -> None:
    with pytest.raises(LabError, match=match):
        LabConfig(guest_subnet=subnet)


def test_inventory_records_the_guest_net(tmp_path: Path) -> None:
    cfg = LabConfig(hosts=2)
    client = LabHost("client", "mhm-client", "198.18.0.2", 42)
    net = guestnet.describe(cfg, cfg.host_names(), client, tmp_path / "qemu-ifup")
    assert net.guest_first == "198.19.0.100" and net.host_addresses["h2"] == "198.19.0.12"
    inv = Inventory(subnet=cfg.subnet, state_dir=str(tmp_path), shared_dir="/s",
                    bridge_netns="mhm-br", controller=LabHost("ctl", "mhm-ctl", "198.18.0.1"),
                    hosts=[LabHost("h1", "mhm-h1", "198.18.0.11")],
                    ssh=SshAccess("root", 22, "/k", "/kh"), shared_paths={}, guest_net=net)
    inv.save(tmp_path / "inv.yaml")
    assert Inventory.load(tmp_path / "inv.yaml").guest_net == net
    old = inv.to_yaml().split("guest_net:")[0]
    (tmp_path / "old.yaml").write_text(old)
    assert Inventory.load(tmp_path / "old.yaml").guest_net is None


def test_ifup_script_bridges_the_tap(tmp_path: Path) -> None:
    path = guestnet.write_ifup(tmp_path)
    assert path.stat().st_mode & 0o755 == 0o755
    assert 'ip link set "$1" master br-guest' in path.read_text()


def test_faults_refuse_the_controller_and_the_client(tmp_path: Path) -> None:
    inv = Inventory(subnet="198.18.0.0/24", state_dir=str(tmp_path), shared_dir="/s",
                    bridge_netns="mhm-br", controller=LabHost("ctl", "mhm-ctl", "198.18.0.1"),
                    hosts=[], ssh=SshAccess("root", 22, "/k", "/kh"), shared_paths={})
    for name in ("ctl", "client"):
        with pytest.raises(LabError, match="apply to lab hosts"):
            guestnet.unplug(inv, name)
