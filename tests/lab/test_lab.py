"""The lab: real namespaces, real sshd, paramiko with host key checking."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest

from multihost_migration.errors import LabError, RemoteError
from multihost_migration.lab import lab, netns
from multihost_migration.lab.config import LabConfig
from multihost_migration.lab.inventory import Inventory
from multihost_migration.remote import RemoteHost, SshTarget
from tests.lab.conftest import connect


def root_namespace_snapshot() -> dict[str, str]:
    """What the lab must leave exactly as it found it in the root namespace."""
    def out(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    # Zombies are left out: killed daemons are orphans that this machine's
    # init reaps lazily; they hold no namespace, socket or file.
    procs = out("ps", "-eo", "pid,stat,comm", "--no-headers").splitlines()
    user_procs = sorted(p for p in procs if "kworker" not in p and p.split()[1][0] != "Z")
    return {
        "netns": out("ip", "-all", "netns", "list"),
        "addr": out("ip", "-j", "addr"),
        "route": out("ip", "route", "show", "table", "all"),
        "rule": out("ip", "rule"),
        "mounts": open("/proc/mounts").read(),
        "sshd": "\n".join(p for p in user_procs if p.endswith(" sshd")),
        "qemu": "\n".join(p for p in user_procs if "qemu" in p),
    }


def test_up_then_down_leaves_root_namespace_identical(lab_inventory: Inventory,
                                                      lab_config: LabConfig) -> None:
    lab.down(lab_config)
    before = root_namespace_snapshot()
    inv = lab.up(lab_config)
    during = root_namespace_snapshot()
    assert during["netns"] != before["netns"], "lab up created no namespace"
    assert during["addr"] == before["addr"], "lab up changed root namespace addresses"
    assert during["route"] == before["route"], "lab up changed root namespace routes"
    assert all(netns.exists(h.netns) for h in inv.hosts)
    lab.down(lab_config)
    after = root_namespace_snapshot()
    for key in before:
        assert after[key] == before[key], f"lab down left a difference in {key}"
    lab.up(lab_config)  # leave it up for the rest of the session


def test_ssh_into_each_host_with_verified_host_key(inventory: Inventory) -> None:
    for host in inventory.hosts:
        with connect(inventory, host.name) as remote:
            result = remote.run("hostname; ip -4 -o addr show dev eth0")
        assert result.stdout.splitlines()[0] == host.name
        assert host.address in result.stdout


def test_unknown_host_key_is_refused(inventory: Inventory, tmp_path: object) -> None:
    empty = os.path.join(str(tmp_path), "known_hosts")
    open(empty, "w").close()
    target = lab.ssh_target(inventory, "h1")
    target = SshTarget(**{**target.__dict__, "known_hosts": empty})
    with pytest.raises(RemoteError, match="unknown host key"):
        RemoteHost(target, lab.ctl_socket_factory(inventory)).connect()


def test_both_hosts_see_the_same_shared_storage(inventory: Inventory) -> None:
    token = uuid.uuid4().hex
    path = f"/var/lib/virt_test/images/shared-check-{token}"
    with connect(inventory, "h1") as h1, connect(inventory, "h2") as h2:
        try:
            h1.run(f"echo {token} > {path}")
            assert h2.run(f"cat {path}").stdout.strip() == token
        finally:
            h2.run(f"rm -f {path}")
        # reference data is read-only, as on a real lab's NFS
        ro = h1.run("touch /var/lib/virt_test/isos/x", check=False)
        assert ro.exit_status != 0 and "Read-only" in ro.stderr


def test_host1_reaches_host2_over_tcp(inventory: Inventory) -> None:
    h2_addr = inventory.host("h2").address
    with connect(inventory, "h1") as h1, connect(inventory, "h2") as h2:
        listener = h2.client.get_transport().open_session()  # type: ignore[union-attr]
        listener.exec_command(f"timeout 10 socat -T5 TCP-LISTEN:5999,bind={h2_addr} "
                              "SYSTEM:'echo pong-from-$(hostname)'")
        try:
            out = h1.run(f"for i in $(seq 50); do socat -T5 - TCP:{h2_addr}:5999 "
                         "</dev/null && break; sleep 0.1; done", timeout=15).stdout
        finally:
            listener.close()
    assert "pong-from-h2" in out


def test_lab_is_sealed_from_the_root_namespace(inventory: Inventory) -> None:
    # The root namespace has no address or route of the lab subnet ...
    addrs = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    assert inventory.subnet.rsplit(".", 1)[0] + "." not in addrs
    routes = subprocess.run(["ip", "route", "show", "table", "all"],
                            capture_output=True, text=True).stdout
    assert inventory.subnet not in routes
    # ... and a lab host has no route out: the kernel refuses before sending.
    gateway = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True,
                             text=True).stdout.split()
    outside = gateway[2] if len(gateway) > 2 else "192.0.2.1"
    with netns.entered("mhm-h1"):
        s = socket.socket()
        try:
            with pytest.raises(OSError) as err:
                s.connect((outside, 22))
            assert err.value.errno == errno.ENETUNREACH
        finally:
            s.close()


def test_second_up_is_a_noop(inventory: Inventory, lab_config: LabConfig) -> None:
    again = lab.up(lab_config)
    assert [h.sshd_pid for h in again.hosts] == [h.sshd_pid for h in inventory.hosts]


def test_up_repairs_a_dead_sshd_and_a_missing_namespace(inventory: Inventory,
                                                        lab_config: LabConfig) -> None:
    os.kill(inventory.host("h1").sshd_pid, signal.SIGKILL)
    netns.delete("mhm-h2")
    assert lab.status_problems(inventory)
    repaired = lab.up(lab_config)
    assert lab.status_problems(repaired) == []
    with connect(repaired, "h2") as h2:
        assert h2.run("hostname").stdout.strip() == "h2"


def test_down_after_a_crash_without_state_dir(inventory: Inventory, lab_config: LabConfig) -> None:
    # The state directory is gone (a crash, a wiped /run): down still finds
    # and removes every namespace and process by name.
    import shutil
    shutil.rmtree(lab_config.state_dir)
    lab.down(lab_config)
    assert lab.lab_namespaces() == []
    assert "sshd" not in root_namespace_snapshot()["sshd"]
    lab.up(lab_config)


def test_overlapping_subnet_is_refused_before_anything_changes(inventory: Inventory) -> None:
    route = subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True).stdout
    nets = [r["dst"] for r in json.loads(route) if r.get("dst", "default") != "default"]
    assert nets, "the root namespace has no subnet route to overlap with"
    before = lab.lab_namespaces()
    with pytest.raises(LabError, match="overlaps the root namespace route"):
        lab.up(LabConfig(subnet=nets[0]))
    assert lab.lab_namespaces() == before
    assert lab.status_problems(inventory) == []


@pytest.mark.parametrize("argv, message", [
    (["lab", "exec", "h9", "--", "true"], "unknown lab host 'h9'"),
    (["lab", "up", "--hosts", "0"], "--hosts must be between 1 and"),
    (["lab", "up", "--subnet", "10.0.0.0/33"], "is not an IPv4 network"),
])
def test_cli_bad_input_is_one_clear_line(inventory: Inventory, argv: list[str],
                                         message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "multihost_migration.lab.cli", *argv],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_exec_runs_on_the_host(inventory: Inventory) -> None:
    proc = subprocess.run([sys.executable, "-m", "multihost_migration.lab.cli", "lab", "exec",
                           "h2", "--", "sh", "-c", "hostname; ls /var/lib/virt_test"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "h2"
    assert "images" in proc.stdout
