"""The guest NIC: config from params, QEMU command lines (vhost, multiqueue, models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.qemu.cmdline import RunPaths, build_command
from multihost_migration.qemu.config import VMConfig
from multihost_migration.qemu.netdev import NicConfig, nic_args

BASE = {"guest_network": "yes", "job_id": "job1", "kernel": "/k", "initrd": "/i",
        "kernel_params": "console=ttyS0"}


def paths(tmp: Path) -> RunPaths:
    return RunPaths(tmp / "qmp", tmp / "serial", tmp / "serial.log", tmp / "qemu.log",
                    tmp / "pid", tmp)


def nic(**params: str) -> NicConfig:
    found = NicConfig.from_params("vm1", {**BASE, **params})
    assert found is not None
    return found


def test_no_nic_unless_guest_network() -> None:
    assert NicConfig.from_params("vm1", {"job_id": "j"}) is None
    assert NicConfig.from_params("vm1", {"guest_network": "no"}) is None


def test_both_hosts_derive_the_same_mac_ip_and_tap() -> None:
    a, b = nic(), nic()
    assert a == b
    assert a.mac.startswith("52:54:00:") and len(a.mac) == 17
    assert a.ip.startswith("198.19.0.") and 100 <= int(a.ip.rsplit(".", 1)[1]) < 228
    assert len(a.ifname) <= 15
    other = NicConfig.from_params("vm2", BASE)
    assert other is not None and other.mac != a.mac and other.ifname != a.ifname


@pytest.mark.parametrize("vhost", ["on", "off"])
def test_virtio_net_command_line(vhost: str) -> None:
    args = nic_args(nic(vhost=vhost, nic_ip="198.19.0.150", nic_ifname="tap9"))
    assert args[0] == "-netdev" and args[2] == "-device"
    assert args[1] == ("tap,id=net0,ifname=tap9,script=/run/mhm-lab/qemu-ifup,"
                       f"downscript=no,vhost={vhost}")
    assert args[3].startswith("virtio-net-pci,netdev=net0,mac=52:54:00:")
    assert "mq=on" not in args[3]


def test_vhost_on_one_side_only_differs_in_vhost() -> None:
    host1 = nic_args(nic(vhost="on"))
    host2 = nic_args(nic(vhost="off"))
    assert host1[1].replace("vhost=on", "vhost=off") == host2[1]
    assert host1[3] == host2[3]   # same guest-visible device: migration compatible


def test_multiqueue_command_line() -> None:
    args = nic_args(nic(nic_queues="4"))
    assert args[1].endswith(",queues=4")
    assert args[3].endswith(",mq=on,vectors=10")


def test_e1000e_and_bad_values() -> None:
    assert nic_args(nic(nic_model="e1000e"))[3].startswith("e1000e,netdev=net0")
    with pytest.raises(ConfigError, match="nic_model"):
        nic(nic_model="rtl8139x")
    with pytest.raises(ConfigError, match="nic_queues=2 needs nic_model = virtio-net"):
        nic(nic_model="e1000e", nic_queues="2")
    with pytest.raises(ConfigError, match="vhost"):
        nic(vhost="maybe")
    with pytest.raises(ConfigError, match="not in 198.19.0.0/24"):
        nic(nic_ip="10.0.0.1")
    with pytest.raises(ConfigError, match="nic_ifname"):
        nic(nic_ifname="a-name-far-too-long")


def test_kernel_ip_and_full_command(tmp_path: Path) -> None:
    config = VMConfig.from_params("vm1", {**BASE, "nic_kernel_ip": "yes",
                                          "nic_ip": "198.19.0.101"})
    cmd = build_command(config, paths(tmp_path))
    assert cmd[cmd.index("-append") + 1] == "console=ttyS0 mhm.ip=198.19.0.101/24"
    assert "-netdev" in cmd and "-device" in cmd
    plain = build_command(VMConfig.from_params("vm1", {"kernel": "/k",
                                                       "kernel_params": "console=ttyS0"}),
                          paths(tmp_path))
    assert "-netdev" not in plain
    assert plain[plain.index("-append") + 1] == "console=ttyS0"
