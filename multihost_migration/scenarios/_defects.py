"""Known QEMU defects the scenarios make allowances for, and where each was
seen: the allowance applies only there (README, "Known QEMU behaviour").

The TCG lost-writes defect: under TCG a guest task that never leaves the
CPU loses writes across a migration (stale pages on the destination).
Measured on the lab per QEMU version of the source and the destination
(integrity.once without the workaround, tests/lab/test_qemu_features.py);
`TCG_LOST_WRITES_SEEN` lists the (source, destination) major.minor pairs
where it was seen.  Elsewhere the integrity scenarios run without the
guest-side workaround and auto_converge's memory check is strict.

The pair's versions come from preflight (`qemu_pair_versions`, each
host's QEMU in host order); without them (a run that skipped preflight)
the allowance applies, as before these measurements.

Not a scenario itself (no `run`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

#: (source, destination) QEMU major.minor where the lost writes were seen:
#: always a 7.2 source (README); never from a 10.0 source.
TCG_LOST_WRITES_SEEN = frozenset({("7.2", "7.2"), ("7.2", "10.0")})


def major_minor(version: str) -> str:
    """'10.0' for '10.0.2'."""
    return ".".join(version.split(".")[:2])


def pair_versions(params: Mapping[str, Any]) -> Optional[list[str]]:
    """Each host's QEMU major.minor, in host order (None: not known)."""
    value = str(params.get("qemu_pair_versions") or "").split()
    return [major_minor(v) for v in value] or None


def tcg_lost_writes_possible(params: Mapping[str, Any]) -> bool:
    """Under TCG, between QEMUs where the defect was seen (in either
    direction: scenarios migrate both ways), or versions unknown."""
    if str(params.get("accel", "")) != "tcg":
        return False
    versions = pair_versions(params)
    if versions is None or len(versions) < 2:
        return True
    first, second = versions[0], versions[1]
    return bool({(first, second), (second, first)} & TCG_LOST_WRITES_SEEN)


__all__ = ["TCG_LOST_WRITES_SEEN", "major_minor", "pair_versions", "tcg_lost_writes_possible"]
