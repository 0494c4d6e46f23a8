"""Network downtime vs QEMU downtime vs heartbeat downtime, on the lab.

Runs `network.virtio_net` (ping-pong, `heartbeat = yes`, no file copy) for
ROUNDS migrations with QEMU's self-announce on (the default: 5 rounds,
50 ms first step) and again with it off (`announce-rounds = 0`), then
prints, for each, the median and worst of:

    QEMU downtime      query-migrate's downtime (source side)
    heartbeat          largest gap of the guest's 10 ms heartbeat (guest clock seen by the host)
    network downtime   largest gap between UDP echoes at the client (5 ms probe), lost packets

Needs the lab up and the guest built (`mhm lab up`); run it under the lab
lock, alone on the machine for figures worth comparing:

    flock /tmp/mhm-lab.lock .venv/bin/python benchmarks/net_downtime.py [ROUNDS [with|without]]

(a variant alone: each half of the figures in its own lock hold)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from multihost_migration.lab import lab
from multihost_migration.lab.demo import ROOT, autotest_remote_argv

VARIANTS = {"with announce": [],
            # the bridges learn the new port only when the guest speaks:
            # wait long enough for that instead of failing the migration
            "without announce": ["migrate_parameter_announce-rounds = 0",
                                 "netcheck_fdb_timeout = 30", "netcheck_recover_timeout = 30"]}


def run(rounds: int, extra: list[str], workdir: Path) -> list[dict[str, Any]]:
    cfg = workdir / "bench.cfg"
    cfg.write_text("\n".join([
        f"include {ROOT / 'cfg' / 'base.cfg'}", f"include {ROOT / 'cfg' / 'guests.cfg'}",
        f"include {ROOT / 'cfg' / 'subtests.cfg'}", "only JeOS.mhm",
        "only network.virtio_net", f"migrate_count = {rounds}", "heartbeat = yes",
        "net_file_copy = no", *extra, ""]))
    inv = lab.load_inventory()
    results = workdir / "results"
    argv = autotest_remote_argv(inv, results, ROOT / "control.srv", [])
    at = argv.index(str(ROOT / "control.srv"))
    argv[at:at] = ["--cfg", str(cfg)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60 * rounds + 300)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"benchmark run failed (exit {proc.returncode}), see {results}")
    test = json.loads((results / "results.json").read_text())["tests"][0]
    return [st for mig in test["migrations"] for st in mig["stats"].values()]


def stat(values: list[Optional[float]]) -> str:
    found = [v for v in values if isinstance(v, (int, float))]
    if not found:
        return "      -            -"
    return f"{statistics.median(found):7.1f} ms  {max(found):7.1f} ms"


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(f"{rounds} migrations each (TCG, 256 MiB tiny guest, virtio-net, 5 ms UDP probe)")
    print(f"{'':18}{'':13}{'median':>9}  {'worst':>9}")
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    for name, extra in VARIANTS.items():
        if only and not name.startswith(only + " "):
            continue
        with tempfile.TemporaryDirectory(prefix="mhm-netbench-") as tmp:
            start = time.monotonic()
            stats = run(rounds, extra, Path(tmp))
            took = time.monotonic() - start
        nets = [st.get("network") or {} for st in stats]
        print(f"{name} ({len(stats)} migrations, {took:.0f} s):")
        print(f"  {'QEMU downtime':28} {stat([st.get('downtime_ms') for st in stats])}")
        print(f"  {'heartbeat downtime':28} "
              f"{stat([st.get('guest_downtime_ms') for st in stats])}")
        print(f"  {'network downtime':28} {stat([n.get('longest_gap_ms') for n in nets])}")
        print(f"  {'first echo after completion':28} "
              f"{stat([n.get('first_reply_after_mark_ms') for n in nets])}")
        lost = [n.get("lost") for n in nets if isinstance(n.get("lost"), int)]
        kept = sum(1 for n in nets if n.get("tcp_alive_after"))
        on_tap = sum(1 for n in nets if (n.get("fdb") or {}).get("fdb_on_tap"))
        print(f"  lost packets median {statistics.median(lost) if lost else '-'}, worst "
              f"{max(lost) if lost else '-'}; TCP kept {kept}/{len(nets)}; fdb on the "
              f"destination's tap {on_tap}/{len(nets)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
