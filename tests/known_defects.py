"""Defects of QEMU under TCG that this suite found (README, "Known QEMU
behaviour"), as the signatures a test may accept: only under TCG, only on
the QEMU versions where each was seen (measured on the lab), only with the
signature, and as an xfail that names it, never as a pass.

Versions are (source, destination) major.minor pairs; a defect not listed
for a pair was measured there and not seen (or never measured: then the
test fails as usual, which is how a new measurement starts)."""

from __future__ import annotations

from typing import Iterable

import pytest

#: XBZRLE leaves the destination guest with stale pages, hung, or with the
#: memory dirtier process gone, in about half of the migrations here; the
#: memory check or the next login then fails.  Measured on 7.2 only.
XBZRLE = ("guest memory corrupted", "login to vm1 failed",
          "MEMCHECK ERROR kill")
XBZRLE_SEEN = frozenset({("7.2", "7.2")})

#: Lost guest writes of a dirtier that never leaves the CPU (integrity
#: without tcg_tlb_workaround): stale pages on the destination.  Measured
#: on the lab (README): seen with a 7.2 source (7.2 -> 7.2: 48 pages in 1
#: of 82 migrations; 7.2 -> 10.0: 2 pages in 1 of 18), never with a 10.0
#: source (10.0 -> 10.0: 0 of 82, 10.0 -> 7.2: 0 of 17).
LOST_WRITES = ("guest memory corrupted",)
LOST_WRITES_SEEN = frozenset({("7.2", "7.2"), ("7.2", "10.0")})

#: The three defects of 7.2's migrate_cancel (in the device state: not
#: honoured, and disks left inactive under the running guest, seen before
#: the next migration would abort QEMU; accepted in postcopy-active) are no
#: xfail here: cancel_states itself ends WARN with them, only on a QEMU
#: older than the fix (multihost_migration/scenarios/_defects.py, README).


def major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def seen_on(seen: Iterable[tuple[str, str]], src: str, dst: str) -> bool:
    """Was the defect seen between QEMU `src` and `dst` (full versions ok)?"""
    return (major_minor(src), major_minor(dst)) in set(seen)


def lost_writes_seen(src: str, dst: str) -> bool:
    return seen_on(LOST_WRITES_SEEN, src, dst)


def xfail_if_known(reason: str, signs: tuple[str, ...], what: str, accel: str = "tcg",
                   versions: tuple[str, str] = ("7.2", "7.2"),
                   seen: Iterable[tuple[str, str]] = XBZRLE_SEEN) -> None:
    """pytest.xfail when `reason` carries one of `signs` under TCG on a
    version pair where the defect was seen; else return (the caller then
    fails as usual).  The default pair is the system QEMU's (7.2)."""
    if accel == "tcg" and seen_on(seen, *versions) and any(s in reason for s in signs):
        pytest.xfail(f"known QEMU {versions[0]} -> {versions[1]} TCG defect ({what}): "
                     f"{reason[:400]}")
