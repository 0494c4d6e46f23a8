"""Our migration path against a bare script, on one host, under TCG.

Bare: two QEMUs started by hand (the destination with `-incoming tcp:`), QMP
spoken over a raw socket, `migrate`, poll `query-migrate`.  Ours: the VM
class (launch, `-incoming defer`, capability read-back, events, samples).
Both migrate the tiny guest, booted to its login prompt.  Prints QEMU's
total-time for each round and the ratio of the medians.

    .venv/bin/python benchmarks/migration_overhead.py [ROUNDS]
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from multihost_migration.lab.guest import build_guest
from multihost_migration.qemu.vm import VM


def qmp(path: Path, *commands: dict) -> list[dict]:
    sock = socket.socket(socket.AF_UNIX)
    deadline = time.monotonic() + 30
    while True:
        try:
            sock.connect(str(path))
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    f = sock.makefile("rw")
    json.loads(f.readline())
    replies = []
    for cmd in ({"execute": "qmp_capabilities"},) + commands:
        f.write(json.dumps(cmd) + "\n")
        f.flush()
        while True:
            msg = json.loads(f.readline())
            if "return" in msg or "error" in msg:
                replies.append(msg)
                break
    sock.close()
    return replies[1:]


def bare_round(image: object, work: Path, port: int) -> int:
    base = ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "256", "-nodefaults",
            "-display", "none", "-kernel", str(image.kernel), "-initrd", str(image.initrd),  # type: ignore[attr-defined]
            "-append", image.kernel_cmdline]  # type: ignore[attr-defined]
    src_qmp, dst_qmp = work / "src.qmp", work / "dst.qmp"
    serial = work / "serial.log"
    src = subprocess.Popen(base + ["-qmp", f"unix:{src_qmp},server=on,wait=off",
                                   "-serial", f"file:{serial}"])
    dst = subprocess.Popen(base + ["-qmp", f"unix:{dst_qmp},server=on,wait=off",
                                   "-serial", "null", "-incoming", f"tcp:127.0.0.1:{port}"])
    try:
        deadline = time.monotonic() + 60
        while b"login:" not in (serial.read_bytes() if serial.exists() else b""):
            if time.monotonic() > deadline:
                raise RuntimeError("bare guest did not boot")
            time.sleep(0.1)
        qmp(src_qmp, {"execute": "migrate", "arguments": {"uri": f"tcp:127.0.0.1:{port}"}})
        while True:
            info = qmp(src_qmp, {"execute": "query-migrate"})[0]["return"]
            if info.get("status") == "completed" and "total-time" in info:
                return int(info["total-time"])
            if info.get("status") == "failed":
                raise RuntimeError(f"bare migration failed: {info}")
            time.sleep(0.05)
    finally:
        for proc in (src, dst):
            proc.kill()
            proc.wait()


def our_round(image: object, work: Path) -> int:
    params = {"kernel": str(image.kernel), "initrd": str(image.initrd),  # type: ignore[attr-defined]
              "kernel_params": image.kernel_cmdline, "accel": "tcg", "mem": "256"}  # type: ignore[attr-defined]
    src, dst = VM("vm1", params, work / "src"), VM("vm1", params, work / "dst")
    try:
        src.create()
        src.wait_for_login(60)
        dst.create(incoming=True)
        for vm in (src, dst):
            vm.apply_migration_settings({})
        port = dst.start_incoming("tcp", "127.0.0.1", 0)
        stats = src.migrate("127.0.0.1", port, timeout=120)
        dst.wait_for_migration_incoming(60)
        return int(stats.total_time_ms or 0)
    finally:
        src.destroy(gracefully=False)
        dst.destroy(gracefully=False)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        image = build_guest(Path(tmp) / "guest")
        bare, ours = [], []
        for i in range(rounds):  # interleaved, so load changes hit both alike
            work = Path(tmp) / f"r{i}"
            work.mkdir()
            bare.append(bare_round(image, work, 47000 + i))
            ours.append(our_round(image, work))
            print(f"round {i + 1}: bare {bare[-1]} ms, ours {ours[-1]} ms", flush=True)
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"median total-time: bare {b:.0f} ms, ours {o:.0f} ms, ratio {o / b:.2f}")


if __name__ == "__main__":
    main()
