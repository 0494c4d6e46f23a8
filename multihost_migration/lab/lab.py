"""Bring the embedded lab up, take it down, report its state.

Topology (nothing is added to the root namespace):

    mhm-ctl  eth0 .1  ----+
    mhm-h1   eth0 .11 ----+-- br0 in mhm-br (no address)
    mhm-h2   eth0 .12 ----+
    mhm-client eth0 .2 ---+   (the guests' outside world, see guestnet.py)

plus the guests' L2 segment (guestnet.py): a bridge in every host, joined
by the switch `seg0` in mhm-br, and the client namespace on it.

`up` on top of a healthy lab of the same shape is a no-op; on anything else
(half built, stale after a crash, other shape) it tears the remains down
and builds afresh.  `down` finds what to remove from the system itself
(namespaces named mhm-*, their processes, /etc/netns/mhm-*), not only from
the state directory, so it also cleans up after a crash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

from multihost_migration.errors import LabError
from multihost_migration.lab import guestnet, netns, qemu_choice, sshd
from multihost_migration.lab.config import (
    BRIDGE_NETNS, PREFIX, SHARED_SUBDIRS, VIRT_TEST_ROOT, LabConfig, check_subnets_free)
from multihost_migration.lab.inventory import Inventory, LabHost, SharedPath, SshAccess
from multihost_migration.remote import SocketFactory
from multihost_migration.remote import SshTarget as SshTarget

log = logging.getLogger(__name__)

SSH_PORT = 22
ETC_NETNS = Path("/etc/netns")
CREATED_FILE = "created.json"   # root-fs paths the lab had to create, removed by down
LAB_FORMAT = 3                  # 2: hosts share the machine's /tmp; 3: guest segment


def inventory_path(state_dir: Path) -> Path:
    return state_dir / "inventory.yaml"


def load_inventory(state_dir: Path | None = None) -> Inventory:
    return Inventory.load(inventory_path(state_dir or LabConfig().state_dir))


def lab_namespaces() -> list[str]:
    return [n for n in netns.list_netns() if n.startswith(PREFIX + "-")]


def up(cfg: LabConfig) -> Inventory:
    """Bring the lab up (or repair it) and return its inventory."""
    healthy = _healthy_inventory(cfg)
    if healthy is not None:
        log.info("lab already up with %d hosts", len(healthy.hosts))
        if healthy.python != sys.executable:  # another checkout drives the lab now
            healthy = replace(healthy, python=sys.executable)
            healthy.save(inventory_path(cfg.state_dir))
        for host in guestnet.unplugged(healthy):   # `up` repairs an unplug-net fault
            guestnet.replug(healthy, host)
        return _apply_qemu(cfg, healthy)
    check_subnets_free(cfg)   # before touching anything
    if lab_namespaces() or cfg.state_dir.exists():
        log.info("repairing: removing the remains of a previous lab")
        down(cfg)
    try:
        return _apply_qemu(cfg, _build(cfg))
    except BaseException:
        log.error("lab up failed; removing what was built")
        with contextlib.suppress(LabError):
            down(cfg)
        raise


def _build(cfg: LabConfig) -> Inventory:
    state = cfg.state_dir
    state.mkdir(parents=True, exist_ok=True)
    created = [p for p in (sshd.PRIVSEP_DIR, VIRT_TEST_ROOT) if not p.exists()]
    (state / CREATED_FILE).write_text(json.dumps([str(p) for p in created]))
    for sub in SHARED_SUBDIRS:
        (cfg.shared_dir / sub).mkdir(parents=True, exist_ok=True)

    key = state / "id_ed25519"
    sshd.generate_key(key, "mhm-lab-controller")
    authorized = state / "authorized_keys"
    authorized.write_text(sshd.public_key(key) + "\n")
    authorized.chmod(0o600)

    names = ["ctl"] + cfg.host_names()
    _build_network(cfg, names)
    guestnet.build_segment(cfg, cfg.host_names())
    _write_hosts_files(cfg, names + [guestnet.CLIENT])
    ifup = guestnet.write_ifup(state)

    hosts: list[LabHost] = []
    known_hosts: list[str] = []
    pending: list[tuple[LabHost, Path]] = []
    for name in cfg.host_names():
        host_dir = state / "hosts" / name
        host_dir.mkdir(parents=True, exist_ok=True)
        sshd.generate_key(host_dir / "ssh_host_ed25519_key", f"mhm-lab-{name}")
        address = cfg.address(name)
        sshd.write_config(host_dir, address, SSH_PORT, authorized)
        ns = cfg.netns_of(name)
        pid = sshd.start(ns, name, host_dir, cfg.shared_dir)
        pending.append((LabHost(name, ns, address, pid), host_dir))
        pub = sshd.public_key(host_dir / "ssh_host_ed25519_key").rsplit(" ", 1)[0]
        known_hosts.append(f"{name},{address} {pub}")
    client = _start_client_sshd(cfg, authorized, known_hosts)
    for host, _ in pending:   # start all, then wait: the sshds come up in parallel
        sshd.wait_listening(host.netns, host.address, SSH_PORT, host.sshd_pid)
        hosts.append(host)
    sshd.wait_listening(client.netns, client.address, SSH_PORT, client.sshd_pid)
    (state / "known_hosts").write_text("\n".join(known_hosts) + "\n")

    inv = Inventory(
        subnet=cfg.subnet, state_dir=str(state), shared_dir=str(cfg.shared_dir),
        bridge_netns=BRIDGE_NETNS,
        controller=LabHost("ctl", cfg.netns_of("ctl"), cfg.address("ctl")),
        hosts=hosts,
        ssh=SshAccess("root", SSH_PORT, str(key), str(state / "known_hosts")),
        shared_paths={sub: SharedPath(str(VIRT_TEST_ROOT / sub), str(cfg.shared_dir / sub), mode)
                      for sub, mode in SHARED_SUBDIRS.items()},
        python=sys.executable,
        lab_format=LAB_FORMAT,
        guest_net=guestnet.describe(cfg, cfg.host_names(), client, ifup),
    )
    inv.save(inventory_path(state))
    return inv


def _start_client_sshd(cfg: LabConfig, authorized: Path, known_hosts: list[str]) -> LabHost:
    """The client namespace's sshd (no shared storage there): how a host
    asks the outside world to measure its guest's network."""
    name = guestnet.CLIENT
    host_dir = cfg.state_dir / name
    host_dir.mkdir(parents=True, exist_ok=True)
    sshd.generate_key(host_dir / "ssh_host_ed25519_key", f"mhm-lab-{name}")
    address = cfg.address(name)
    sshd.write_config(host_dir, address, SSH_PORT, authorized)
    ns = cfg.netns_of(name)
    pid = sshd.start(ns, name, host_dir, None)
    pub = sshd.public_key(host_dir / "ssh_host_ed25519_key").rsplit(" ", 1)[0]
    known_hosts.append(f"{name},{address} {pub}")
    return LabHost(name, ns, address, pid)


def _apply_qemu(cfg: LabConfig, inv: Inventory) -> Inventory:
    """Each host's default QEMU as `cfg.qemu` asks (the system's for hosts
    it does not name), set in the host's mount namespace and recorded in the
    inventory; hosts already as asked are left alone."""
    wanted = dict(cfg.qemu)
    system_version = qemu_choice.version_of(qemu_choice.SYSTEM_BINARY)
    prefixes = qemu_choice.installed()
    hosts = []
    for host in inv.hosts:
        binary = qemu_choice.binary_for(wanted.get(host.name, qemu_choice.SYSTEM),
                                        system_version, prefixes)
        if host.qemu_binary != binary:
            qemu_choice.apply(host.sshd_pid, binary)
            log.info("%s: qemu-system-x86_64 is %s now", host.name, binary)
            host = replace(host, qemu_binary=binary,
                           qemu_version=qemu_choice.version_of(binary))
        hosts.append(host)
    if hosts != inv.hosts:
        inv = replace(inv, hosts=hosts)
        inv.save(inventory_path(cfg.state_dir))
    return inv


def _build_network(cfg: LabConfig, names: list[str]) -> None:
    netns.add(BRIDGE_NETNS)
    netns.ip(BRIDGE_NETNS, "link", "add", "br0", "type", "bridge")
    netns.ip(BRIDGE_NETNS, "link", "set", "br0", "up")
    for name in names:
        ns = cfg.netns_of(name)
        netns.add(ns)
        port = f"p-{name}"
        # Both ends are created inside the lab: the peer moves straight into ns.
        netns.ip(BRIDGE_NETNS, "link", "add", port, "type", "veth",
                 "peer", "name", "eth0", "netns", ns)
        netns.ip(BRIDGE_NETNS, "link", "set", port, "master", "br0", "up")
        netns.ip(ns, "addr", "add", f"{cfg.address(name)}/{cfg.prefixlen}", "dev", "eth0")
        netns.ip(ns, "link", "set", "eth0", "up")


def _write_hosts_files(cfg: LabConfig, names: list[str]) -> None:
    """/etc/netns/NS/hosts: `ip netns exec` shows it as /etc/hosts inside NS,
    so lab host names resolve in the lab and nowhere else."""
    lines = ["127.0.0.1\tlocalhost"] + [f"{cfg.address(n)}\t{n}" for n in names]
    for name in names:
        d = ETC_NETNS / cfg.netns_of(name)
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts").write_text("\n".join(lines + [f"# this host: {name}", ""]))


def down(cfg: LabConfig, purge: bool = False) -> None:
    """Remove every namespace, process, mount and file the lab created."""
    for ns in lab_namespaces():
        netns.delete(ns)
    left = lab_namespaces()
    if left:
        raise LabError(f"could not delete lab namespaces: {', '.join(left)}")
    for d in ETC_NETNS.glob(f"{PREFIX}-*"):
        shutil.rmtree(d, ignore_errors=True)
    with contextlib.suppress(OSError):
        ETC_NETNS.rmdir()  # only if empty: it may hold other users' files
    created = cfg.state_dir / CREATED_FILE
    if created.exists():
        for path in json.loads(created.read_text()):
            with contextlib.suppress(OSError):
                Path(path).rmdir()
    shutil.rmtree(cfg.state_dir, ignore_errors=True)
    if purge:
        shutil.rmtree(cfg.shared_dir, ignore_errors=True)


def _healthy_inventory(cfg: LabConfig) -> Inventory | None:
    try:
        inv = load_inventory(cfg.state_dir)
    except LabError:
        return None
    if inv.subnet != cfg.subnet or len(inv.hosts) != cfg.hosts or \
            inv.lab_format != LAB_FORMAT:
        return None
    if inv.shared_dir != str(cfg.shared_dir):
        return None
    if inv.guest_net is None or inv.guest_net.subnet != cfg.guest_subnet:
        return None
    problems = status_problems(inv)
    if problems:
        log.info("lab is not healthy: %s", "; ".join(problems))
        return None
    return inv


def status_problems(inv: Inventory) -> list[str]:
    """What is wrong with a lab, empty if every part answers."""
    problems = []
    expected = {inv.bridge_netns, inv.controller.netns} | {h.netns for h in inv.hosts}
    if inv.guest_net is not None:
        expected.add(inv.guest_net.client.netns)
    for ns in sorted(expected - set(lab_namespaces())):
        problems.append(f"namespace {ns} missing")
    if problems:
        return problems
    problems += guestnet.problems(inv)
    sshds = list(inv.hosts) + ([inv.guest_net.client] if inv.guest_net else [])
    for host in sshds:
        try:
            with netns.entered(inv.controller.netns):
                sock = socket.create_connection((host.address, inv.ssh.port), timeout=2.0)
            with sock:
                sock.settimeout(2.0)
                if not sock.recv(64).startswith(b"SSH-"):
                    problems.append(f"{host.name}: port {inv.ssh.port} is not sshd")
        except OSError as err:
            problems.append(f"{host.name}: sshd at {host.address}:{inv.ssh.port} "
                            f"does not answer ({err})")
    return problems


def record_accel(state_dir: Path, accel: str, reason: str, guest: dict[str, object]) -> Inventory:
    inv = load_inventory(state_dir)
    inv = replace(inv, accel=accel, accel_reason=reason, guest=dict(guest))
    inv.save(inventory_path(state_dir))
    return inv


def exec_argv(inv: Inventory, host: str, command: list[str]) -> list[str]:
    """argv that runs `command` as if on lab host `host` (or the controller)."""
    if not command:
        raise LabError("nothing to run: give a command after --")
    if host == guestnet.CLIENT and inv.guest_net is not None:
        return ["ip", "netns", "exec", inv.guest_net.client.netns, *command]
    target = inv.host(host)
    if host == "ctl":
        return ["ip", "netns", "exec", target.netns, *command]
    if not target.sshd_pid or not os.path.exists(f"/proc/{target.sshd_pid}"):
        raise LabError(f"sshd of {host} is not running: run `mhm lab up` to repair the lab")
    return ["nsenter", "-t", str(target.sshd_pid), "-n", "-m", "-u", "--", *command]


def ssh_target(inv: Inventory, host: str) -> SshTarget:
    """How the controller reaches lab host `host` over SSH."""
    h = inv.host(host)
    return SshTarget(hostname=h.address, port=inv.ssh.port, user=inv.ssh.user,
                      key_filename=inv.ssh.key, known_hosts=inv.ssh.known_hosts)


def ctl_socket_factory(inv: Inventory) -> SocketFactory:
    """Sockets opened from the controller namespace, for callers in the root one."""
    def connect(hostname: str, port: int, timeout: float) -> socket.socket:
        with netns.entered(inv.controller.netns):
            return socket.create_connection((hostname, port), timeout=timeout)
    return connect


def qemu_pids() -> list[int]:
    """Every QEMU on this machine, in any namespace.

    /proc/PID/comm holds 15 characters, "qemu-system-x86" for
    qemu-system-x86_64: `pgrep -x qemu-system-x86_64` never matches.
    """
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().startswith("qemu-system-"):
                        pids.append(int(entry))
            except OSError:
                continue
    return sorted(pids)


def lab_qemu_pids(hosts: Optional[Sequence[str]] = None) -> list[int]:
    """The QEMUs running inside lab namespaces (what a lab run may leave);
    with `hosts`, only inside those hosts' namespaces."""
    present = lab_namespaces()
    spaces = present if hosts is None else [f"{PREFIX}-{h}" for h in hosts if
                                            f"{PREFIX}-{h}" in present]
    inside = {pid for ns in spaces for pid in netns.pids(ns)}
    return [pid for pid in qemu_pids() if pid in inside]
