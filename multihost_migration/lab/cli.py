"""`mhm`: the embedded lab and the tiny guest from the command line.

    mhm lab up [--hosts N] [--subnet CIDR] [--guest-subnet CIDR] [--qemu h1=7.2,h2=10.0]
                                             build or repair the lab (each host's QEMU)
    mhm lab up --storage local               each host its own images (no shared storage)
    mhm lab down [--purge]                   remove it (--purge: shared storage too)
    mhm lab status                           what runs, what is broken
    mhm lab inventory                        the inventory YAML
    mhm lab exec HOST -- CMD...              run CMD on a lab host (or ctl, client)
    mhm lab fault unplug-net h2 | replug-net h2   cut / restore h2's link to the guest segment
    mhm guest build [--output DIR] [--force] build the tiny guest
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from multihost_migration.errors import MigrationTestError
from multihost_migration.lab import lab
from multihost_migration.lab.config import DEFAULT_GUEST_SUBNET, DEFAULT_SUBNET, LabConfig
from multihost_migration.lab.inventory import Inventory

log = logging.getLogger("mhm")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mhm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="area", required=True)

    lab_p = sub.add_parser("lab", help="the embedded multi-host lab")
    lab_sub = lab_p.add_subparsers(dest="action", required=True)
    up = lab_sub.add_parser("up", help="build or repair the lab")
    up.add_argument("--hosts", type=int, default=2)
    up.add_argument("--subnet", default=DEFAULT_SUBNET)
    up.add_argument("--guest-subnet", default=DEFAULT_GUEST_SUBNET,
                    help="the guests' L2 segment (client, host bridges, guests)")
    up.add_argument("--qemu", default="", metavar="HOST=VERSION,...",
                    help="each host's default QEMU, e.g. h1=7.2,h2=10.0 (hosts not "
                         "named, and every host without --qemu: the system's)")
    up.add_argument("--storage", choices=("shared", "local"), default="shared",
                    help="local: each host its own images directory, nothing shared "
                         "(storage_mode = copy); a plain `lab up` shares them again")
    up.add_argument("--no-guest", action="store_true",
                    help="do not build the guest nor probe the accelerator")
    down = lab_sub.add_parser("down", help="remove the lab")
    down.add_argument("--purge", action="store_true",
                      help="also delete the shared storage (guest images)")
    lab_sub.add_parser("status", help="report the lab's state")
    lab_sub.add_parser("inventory", help="print the inventory YAML")
    ex = lab_sub.add_parser("exec", help="run a command on a lab host")
    ex.add_argument("host", help="h1, h2, ..., ctl or client")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    _fault_parser(lab_sub)

    guest_p = sub.add_parser("guest", help="the tiny guest")
    guest_sub = guest_p.add_subparsers(dest="action", required=True)
    build = guest_sub.add_parser("build", help="build the guest (cached)")
    build.add_argument("--output", type=Path, default=None,
                       help="directory (default: the lab's shared images directory)")
    build.add_argument("--force", action="store_true")
    return p


def _fault_parser(lab_sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    fault = lab_sub.add_parser("fault", help="inject a fault inside the lab")
    fault_sub = fault.add_subparsers(dest="fault", required=True)
    part = fault_sub.add_parser("partition", help="drop all traffic between two hosts")
    part.add_argument("a")
    part.add_argument("b")
    heal = fault_sub.add_parser("heal", help="remove the network faults")
    heal.add_argument("host", nargs="?")
    block = fault_sub.add_parser("block-port", help="drop TCP to/from a port on a host")
    block.add_argument("host")
    block.add_argument("port", type=int)
    delay = fault_sub.add_parser("delay", help="add latency to a host's link")
    delay.add_argument("host")
    delay.add_argument("ms", type=int)
    kill = fault_sub.add_parser("kill", help="signal a host's processes by command line")
    kill.add_argument("host")
    kill.add_argument("pattern")
    kill.add_argument("--signal", default="KILL")
    for verb, what in (("unplug-net", "cut a host's link to the guest segment"),
                       ("replug-net", "restore a host's link to the guest segment")):
        net = fault_sub.add_parser(verb, help=what)
        net.add_argument("host")
    for verb in ("freeze", "thaw"):
        fz = fault_sub.add_parser(verb, help=f"{verb} every process of a host")
        fz.add_argument("host")


def _require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("mhm lab: must run as root (it creates network namespaces)")


def _ensure_guest(cfg: LabConfig, force: bool = False) -> None:
    from multihost_migration.lab.accel import cached_probe
    from multihost_migration.lab.guest import build_guest
    images = cfg.shared_dir / "images"
    image = build_guest(images, force=force)
    accel, reason = cached_probe(image, cfg.shared_dir / ".accel.json")
    lab.record_accel(cfg.state_dir, accel, reason, image.to_dict())
    print(f"guest: {image.kernel.parent} (accel {accel}: {reason})")


def _fault(inv: Inventory, args: argparse.Namespace) -> int:
    import signal

    from multihost_migration.lab import faults
    if args.fault == "partition":
        faults.partition(inv, args.a, args.b)
        print(f"partitioned {args.a} and {args.b}")
    elif args.fault == "heal":
        faults.heal(inv, args.host)
        print(f"healed {args.host or 'all hosts'}")
    elif args.fault == "block-port":
        faults.block_port(inv, args.host, args.port)
        print(f"blocked TCP port {args.port} on {args.host}")
    elif args.fault == "delay":
        faults.delay(inv, args.host, args.ms)
        print(f"delayed {args.host} by {args.ms} ms")
    elif args.fault in ("unplug-net", "replug-net"):
        from multihost_migration.lab import guestnet
        (guestnet.unplug if args.fault == "unplug-net" else guestnet.replug)(inv, args.host)
        print(f"{args.host}: {'cut from' if args.fault == 'unplug-net' else 'back on'} "
              f"the guest segment")
    elif args.fault == "kill":
        name = args.signal.upper()
        sig = signal.Signals[name if name.startswith("SIG") else "SIG" + name]
        pids = faults.kill(inv, args.host, args.pattern, sig)
        print(f"sent {sig.name} to {pids or 'nothing'} on {args.host}")
        return 0 if pids else 1
    else:
        pids = getattr(faults, args.fault)(inv, args.host)
        print(f"{args.fault}: {len(pids)} process(es) on {args.host}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.area == "guest":
        from multihost_migration.lab.guest import build_guest
        cfg = LabConfig()
        out = args.output or cfg.shared_dir / "images"
        start = time.monotonic()
        image = build_guest(out, force=args.force)
        print(f"guest ready in {out} ({time.monotonic() - start:.1f} s)")
        if args.output is None and lab.inventory_path(cfg.state_dir).exists():
            _ensure_guest(cfg)
        del image
        return 0
    if args.action in ("up", "down", "exec", "fault"):
        _require_root()
    if args.action == "up":
        from multihost_migration.lab.qemu_choice import parse_choice
        names = LabConfig(hosts=args.hosts, subnet=args.subnet).host_names()
        cfg = LabConfig(hosts=args.hosts, subnet=args.subnet,
                        qemu=tuple(parse_choice(args.qemu, names).items()),
                        guest_subnet=args.guest_subnet)
        start = time.monotonic()
        inv = lab.up(cfg)
        if not args.no_guest:
            _ensure_guest(cfg)
        from multihost_migration.lab import local_storage
        local_storage.apply(cfg, inv, args.storage)
        hosts = ", ".join(f"{h.name}={h.address} (QEMU {h.qemu_version})" for h in inv.hosts)
        print(f"lab up in {time.monotonic() - start:.1f} s: {hosts}; "
              f"inventory {lab.inventory_path(cfg.state_dir)}")
        return 0
    if args.action == "down":
        lab.down(LabConfig(), purge=args.purge)
        print("lab down")
        return 0
    inv = lab.load_inventory()
    if args.action == "inventory":
        sys.stdout.write(inv.to_yaml())
        return 0
    if args.action == "status":
        return _status(inv)
    if args.action == "fault":
        return _fault(inv, args)
    # exec
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    argv = lab.exec_argv(inv, args.host, command)
    os.execvp(argv[0], argv)


def _status(inv: Inventory) -> int:
    problems = lab.status_problems(inv)
    for host in inv.hosts:
        print(f"{host.name}\t{host.address}\t{host.netns}\tsshd pid {host.sshd_pid}"
              f"\tQEMU {host.qemu_version} {host.qemu_binary}")
    print(f"accel\t{inv.accel}\t{inv.accel_reason}")
    if inv.guest_net is not None:
        from multihost_migration.lab import guestnet
        net = inv.guest_net
        cut = guestnet.unplugged(inv)
        print(f"guest net\t{net.subnet}\tclient {net.client_address} "
              f"(ssh {net.client.address})\t"
              + (f"unplugged: {', '.join(cut)}" if cut else "every host plugged in"))
    if problems:
        print("problems:\n  " + "\n  ".join(problems))
        return 1
    print("lab healthy")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except MigrationTestError as err:
        print(f"mhm: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mhm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
