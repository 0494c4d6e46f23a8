"""Time our Cartesian parser against the reference on the same large config.

    .venv/bin/python benchmarks/cartesian_bench.py [--filters "only qcow2" ...]

Builds avocado-vt's shipped tree (base, machines, guest-hw and a guest-os
file assembled from its guest-os/ directory, as avocado-vt's bootstrap does)
in a temporary directory, adds `only` filters, and prints both times, the
dict counts and the ratio.  Needs avocado-framework-plugin-vt (test extra).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.unit.cartesian_shipped import shipped_tree  # noqa: E402

DEFAULT_FILTERS = ["only qcow2", "only virtio_blk", "only smp2",
                   "only virtio_net", "only RHEL.8", "only i440fx"]


def timed(factory: Callable[[], Any], path: str) -> tuple[float, int]:
    start = time.perf_counter()
    parser = factory()
    parser.parse_file(path)
    count = sum(1 for _ in parser.get_dicts())
    return time.perf_counter() - start, count


def main() -> int:
    from virttest import cartesian_config

    from multihost_migration.cartesian import Parser
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--filters", nargs="*", default=DEFAULT_FILTERS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = shipped_tree(tmp, args.filters)
        ours, n_ours = timed(Parser, path)
        ref, n_ref = timed(cartesian_config.Parser, path)
    print(f"filters: {'; '.join(args.filters)}")
    print(f"ours:      {ours:8.2f} s  {n_ours} dicts")
    print(f"reference: {ref:8.2f} s  {n_ref} dicts")
    print(f"ratio:     {ref / ours:8.1f}x faster")
    return 0 if n_ours == n_ref else 1


if __name__ == "__main__":
    sys.exit(main())
