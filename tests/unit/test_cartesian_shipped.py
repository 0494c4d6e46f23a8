"""Our Parser against the reference on the cfg trees the reference ships.

Every dict is compared in order: its name and every key and value, in
order (also the order of the keys).  The trees (see cartesian_shipped.py):

* every shipped file that parses on its own (`STANDALONE`), whole;
* the guest-os tree, as bootstrap writes guest-os.cfg, whole (190 dicts);
* guest-hw.cfg: its whole product is 4,354,560 dicts, which takes the
  reference about 40 minutes, so it is compared pairwise: for every pair
  of its 11 top-level blocks, both blocks whole and every other block
  kept to its default (or first) entry (55 selections, 1,234 dicts); and
  in 12 random selections of two entries of every block (higher-order
  interactions);
* the composed tree (base, machines, guest-os, guest-hw, cdkeys,
  virtio-win, as a backend's tests-shared.cfg includes them): all
  machines and guests, with each guest-hw block whole in turn and the
  others kept to one entry (11 selections);
* every backend's own tests.cfg (qemu, libvirt, libguestfs, openvswitch,
  v2v, virttools, lvsb) over its tests-shared.cfg, with the generated
  files bootstrap adds (guest-os.cfg, host.cfg, a stand-in subtests.cfg):
  whole where the reference takes well under a minute, else with the
  ``only`` filters listed in `BACKEND_SLOW`.

The full comparisons are marked slow (``make test-full``); ``make test``
runs a small selection of each kind.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, Iterator, Sequence

import pytest

from multihost_migration.cartesian import Parser

from tests.unit.cartesian_shipped import (
    STANDALONE, backend_tree, guest_hw_selection, guest_os_text, only_word,
    reference_dir, shared_cfg_dir, shipped_tree, top_blocks)

# The reference is a pinned test dependency: a missing one fails, not skips.
from virttest import cartesian_config  # noqa: E402
logging.getLogger("virttest").setLevel(logging.CRITICAL)

GUEST_HW = os.path.join(shared_cfg_dir(), "guest-hw.cfg")
N_HW_BLOCKS = len(top_blocks(GUEST_HW))
HW_PAIRS = [(i, j) for i in range(N_HW_BLOCKS) for j in range(i + 1, N_HW_BLOCKS)]


def _norm(value: Any) -> Any:
    if isinstance(value, dict):
        return [(k, _norm(v)) for k, v in value.items()]
    return value


def _dicts(factory: Any, path: str) -> Iterator[dict[str, Any]]:
    parser = factory()
    parser.parse_file(path)
    return parser.get_dicts()  # type: ignore[no-any-return]


def compare(path: str) -> int:
    """Both parsers' dicts of the file, one by one; their number."""
    ours = _dicts(Parser, path)
    ref = _dicts(cartesian_config.Parser, path)
    count = 0
    end = object()
    while True:
        d1, d2 = next(ours, end), next(ref, end)
        if d1 is end or d2 is end:
            assert d1 is d2, (f"{path}: after {count} equal dicts, "
                              f"{'ours' if d1 is end else 'the reference'} "
                              "has no more")
            return count
        assert isinstance(d1, dict) and isinstance(d2, dict)
        if _norm(d1) != _norm(d2):
            diff = [k for k in dict.fromkeys(list(d1) + list(d2))
                    if d1.get(k, end) != d2.get(k, end)]
            pytest.fail(f"{path}: dict {count} differs: ours {d1.get('name')!r}, "
                        f"reference {d2.get('name')!r}; keys {diff[:10]} "
                        f"(or their order: {list(d1) != list(d2)})")
        count += 1


def _write(path: str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _with_filters(tmp: Any, source: str, filters: Sequence[str]) -> str:
    """A top file including `source` (absolute), then `filters`."""
    return _write(str(tmp / "top.cfg"), f"include {source}\n"
                  + "".join(f"{f}\n" for f in filters))


# -- files that parse on their own -------------------------------------------


@pytest.mark.parametrize("name", [n for n in STANDALONE
                                  if not n.endswith("guest-hw.cfg")])
def test_standalone_file(name: str) -> None:
    compare(os.path.join(reference_dir(), name))


def test_guest_os_tree(tmp_path: Any) -> None:
    assert compare(_write(str(tmp_path / "guest-os.cfg"), guest_os_text())) == 190


def _hw_pair(tmp: Any, pair: tuple[int, int]) -> int:
    return compare(_with_filters(tmp, GUEST_HW, guest_hw_selection(pair)))


@pytest.mark.parametrize("pair", [(0, 2), (3, 7), (1, 10), (4, 8), (5, 6),
                                  (9, 10)])
def test_guest_hw_pairs_quick(tmp_path: Any, pair: tuple[int, int]) -> None:
    assert _hw_pair(tmp_path, pair) > 0


@pytest.mark.slow
@pytest.mark.parametrize("pair", HW_PAIRS)
def test_guest_hw_pairs(tmp_path: Any, pair: tuple[int, int]) -> None:
    assert _hw_pair(tmp_path, pair) > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_guest_hw_random_selections(tmp_path: Any, seed: int) -> None:
    # higher-order interactions: two entries of every block (at random)
    rng = random.Random(seed)
    filters = []
    for var, names, _ in top_blocks(GUEST_HW):
        chosen = rng.sample(names, min(2, len(names)))
        filters.append("only " + ", ".join(only_word(var, n) for n in chosen))
    assert compare(_with_filters(tmp_path, GUEST_HW, filters)) > 0


def test_guest_hw_every_block_has_entries() -> None:
    # the pairwise selections above mean something only if every block
    # is found, with its entries
    blocks = top_blocks(GUEST_HW)
    assert N_HW_BLOCKS == 11 and all(len(names) >= 2 for _, names, _ in blocks)


# -- the composed tree ---------------------------------------------------------


def test_composed_tree_quick(tmp_path: Any) -> None:
    assert compare(shipped_tree(str(tmp_path), guest_hw_selection())) > 100


@pytest.mark.slow
@pytest.mark.parametrize("block", range(N_HW_BLOCKS))
def test_composed_tree_by_guest_hw_block(tmp_path: Any, block: int) -> None:
    assert compare(shipped_tree(str(tmp_path), guest_hw_selection([block]))) > 0


# -- the backends' tests.cfg ----------------------------------------------------

_QEMU_HW = ["only virtio_net", "only virtio_blk", "only qcow2", "only smp2"]
BACKEND_QUICK = [
    ("lvsb", []),
    ("libguestfs", ["only Fedora"]),
    ("qemu", _QEMU_HW + ["only RHEL.8"]),
    ("v2v", ["only RHEL.8", "only convert_libvirt"]),
    ("libvirt", ["only Win10"]),
]
BACKEND_SLOW = [
    ("lvsb", []),
    ("libguestfs", []),
    ("openvswitch", []),
    ("virttools", []),
    ("libvirt", []),
    ("qemu", _QEMU_HW),                 # 3,161,424 dicts unfiltered
    ("qemu", ["only virtio_net", "only qcow2"]),
    ("v2v", ["only RHEL.8"]),           # 363,240 dicts unfiltered
    ("v2v", ["only Windows", "only linux_vm_check_local"]),
]


@pytest.mark.parametrize("backend,filters", BACKEND_QUICK,
                         ids=[b for b, _ in BACKEND_QUICK])
def test_backend_tree_quick(tmp_path: Any, backend: str,
                            filters: list[str]) -> None:
    assert compare(backend_tree(str(tmp_path), backend, filters)) > 0


@pytest.mark.slow
@pytest.mark.parametrize("backend,filters", BACKEND_SLOW,
                         ids=[f"{b}-{len(f)}" for b, f in BACKEND_SLOW])
def test_backend_tree(tmp_path: Any, backend: str, filters: list[str]) -> None:
    assert compare(backend_tree(str(tmp_path), backend, filters)) > 0
