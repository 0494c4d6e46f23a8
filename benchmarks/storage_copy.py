"""Figures for storage_mode = copy vs shared, same guest and disk size.

Two QEMUs on this host (TCG, 127.0.0.1), the tiny guest with a data disk
of --disk-mib MiB, --fill-mib MiB of it written by the guest first:

  shared  destination opens the very same image; RAM only migrates
  copy    destination creates its own target, exports it over NBD; the
          source mirrors the disk (sync=full) until READY, then RAM
          migrates with pause-before-switchover, the mirror completes there

Printed per mode (median of --runs): mirror bytes, time to READY and its
throughput, and the total (mirror start, or migrate, to the guest running
on the destination) beside QEMU's own RAM total-time and downtime.

    flock /tmp/mhm-lab.lock .venv/bin/python benchmarks/storage_copy.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from multihost_migration.guest.checks import DiskPattern
from multihost_migration.lab.guest import build_guest
from multihost_migration.params import Params
from multihost_migration.plan import MigrationPlan
from multihost_migration.qemu.transport import Transport
from multihost_migration.qemu.vm import VM
from multihost_migration.storage import create_image, virtual_size
from multihost_migration.storage_copy import DiskCopy

LOOPBACK = "127.0.0.1"


def _plan(guest: dict[str, Any], images: Path, mode: str, disk_mib: int) -> MigrationPlan:
    images.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in guest.items() if k != "image_path"}
    params.update({"vms": "vm1", "images": "image1", "image_name": "disk",
                   "images_base_dir": str(images), "create_image": "yes",
                   "image_size": f"{disk_mib}M", "storage_mode": mode,
                   "migration_listen": LOOPBACK, "job_id": "bench",
                   "migrate_parameter_downtime-limit": "1000"})
    return MigrationPlan.from_params(Params(params), mig_id="mig1", src="h1", dst="h2",
                                     vms=["vm1"])


def one_run(guest: dict[str, Any], tmp: Path, mode: str, disk_mib: int,
            fill_mib: int) -> dict[str, float]:
    src_plan = _plan(guest, tmp / "h1", mode, disk_mib)
    dst_plan = _plan(guest, tmp / ("h2" if mode == "copy" else "h1"), mode, disk_mib)
    create_image(src_plan.vm("vm1").images[0])
    src = VM("vm1", src_plan.vm("vm1").params, tmp / "src", address_of={"h2": LOOPBACK}.get)
    dst = VM("vm1", dst_plan.vm("vm1").params, tmp / "dst")
    try:
        src.create()
        DiskPattern(src.wait_for_login(120)).write(1, fill_mib, timeout=600)
        copy_src = DiskCopy(src_plan, "h1", lambda host: LOOPBACK) if mode == "copy" else None
        copy_dst = DiskCopy(dst_plan, "h2", lambda host: LOOPBACK) if mode == "copy" else None
        if copy_dst is not None:
            size = virtual_size(src_plan.vm("vm1").images[0].path)
            copy_dst.create_targets({"vm1": {"image1": size}})
        dst.create(incoming=True)
        dst.apply_migration_settings(dst_plan.settings)
        if copy_dst is not None and copy_src is not None:
            copy_dst.export(dst)
            copy_src.ports = dict(copy_dst.ports)
        port = dst.start_incoming(Transport.TCP, LOOPBACK, 0)
        src.apply_migration_settings(src_plan.settings)
        start = time.monotonic()
        extra = {"on_pre_switchover": copy_src.start_mirrors(src)} if copy_src else {}
        stats = src.migrate(src_plan.request({"vm1": port}, timeout=600, **extra))
        dst.wait_for_migration_incoming(120)
        total = time.monotonic() - start
        if copy_dst is not None:
            copy_dst.finish_destination([dst])
        result = {"total_s": total, "ram_total_ms": float(stats.total_time_ms or 0),
                  "downtime_ms": float(stats.downtime_ms or 0)}
        if copy_src is not None:
            [mirror] = copy_src.stats("vm1")
            result.update(mirror_mib=mirror["length"] / 2**20, ready_s=mirror["ready_s"],
                          mirror_mbps=mirror["throughput_mbps"])
        return result
    finally:
        src.destroy(gracefully=False)
        dst.destroy(gracefully=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--disk-mib", type=int, default=256)
    parser.add_argument("--fill-mib", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mhm-bench-copy-") as tmpdir:
        tmp = Path(tmpdir)
        image = build_guest(tmp / "guest")
        guest = {"kernel": str(image.kernel), "initrd": str(image.initrd),
                 "kernel_params": image.kernel_cmdline, "accel": "tcg", "mem": "256",
                 "username": image.username, "password": image.password,
                 "shell_prompt": image.shell_prompt_regex}
        print(f"guest 256 MiB RAM, disk {args.disk_mib} MiB ({args.fill_mib} MiB written), "
              f"TCG, loopback, median of {args.runs}")
        for mode in ("shared", "copy"):
            runs = [one_run(guest, tmp / f"{mode}{i}", mode, args.disk_mib, args.fill_mib)
                    for i in range(args.runs)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            line = (f"{mode:<7} total {med['total_s']:6.2f} s   RAM total-time "
                    f"{med['ram_total_ms']:6.0f} ms   downtime {med['downtime_ms']:5.0f} ms")
            if mode == "copy":
                line += (f"   mirror {med['mirror_mib']:.0f} MiB READY in "
                         f"{med['ready_s']:.2f} s = {med['mirror_mbps']:.0f} Mbit/s")
            print(line, flush=True)


if __name__ == "__main__":
    main()
