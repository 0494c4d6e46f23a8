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

Three defects of migrate_cancel (cancel_states), all on the source's QEMU
and all gone in 10.0 (`CancelDefect`: what, first fixed release, the
upstream change): the scenario's verdict is WARN, naming the defect, its
fix and the evidence, only when the source's QEMU is known (preflight)
and older than the fix AND the outcome matches the defect's signature
(`*_signature`); any other outcome, or the same one on a fixed QEMU, FAILs.
The third (`DISKS_LEFT_INACTIVE`) is seen before it does harm: the source's
block nodes after the cancel (`inactive_nodes`: QEMU 10.0's `active` flag,
or, where QMP has none (7.2), the nodes whose parents held `write` before
the migration and hold it no more: inactivation drops every permission).

Not a scenario itself (no `run`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

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


@dataclass(frozen=True)
class CancelDefect:
    """A defect of the source QEMU's migrate_cancel, fixed upstream."""

    what: str
    fixed_in: str      # the first release measured without it (and carrying the fix)
    fix: str           # the upstream change(s), by title and release

    def applies(self, version: Optional[str]) -> bool:
        """Only on a QEMU known (preflight) and older than the fix."""
        return bool(version) and version_key(str(version)) < version_key(self.fixed_in)

    def warning(self, version: str, evidence: str) -> str:
        return (f"KNOWN QEMU {version} DEFECT ({self.what}; fixed upstream by {self.fix}, "
                f"first in QEMU {self.fixed_in}): {evidence}")


CANCEL_IN_POSTCOPY = CancelDefect(
    what="migrate_cancel accepted in postcopy-active: the source stops serving the "
         "guest's pages, the destination QEMU exits, the guest is lost",
    fixed_in="10.0",
    fix="'migration: Reject qmp_migrate_cancel after postcopy' (Fabiano Rosas, "
        "migration pull of 2025-02-14)")

CANCEL_IN_DEVICE = CancelDefect(
    what="migrate_cancel on the device event not honoured: the source reports "
         "'cancelled' and runs on while the destination loaded the whole stream and "
         "holds the guest too (two copies), or every migration completes",
    fixed_in="10.0",
    fix="the completion path's changes 'migration: Fix qmp_query_migrate mbps value' "
        "(9.0: COMPLETED set under the BQL whatever a late cancel set) and "
        "'migration: Adjust locking in migration_maybe_pause()' (10.0: "
        "pre-switchover -> device under the BQL)")


DISKS_LEFT_INACTIVE = CancelDefect(
    what="disks left inactive after a cancel in the device state: the source "
         "inactivated its disks for the switchover, the cancel left them so under the "
         "running guest, and the next migration aborts QEMU (bdrv_inactivate_recurse "
         "assertion, SIGABRT)",
    fixed_in="10.0",
    fix="'migration/block: Fix possible race with block_inactive' (8c97c5a476d1) and "
        "'migration/block: Rewrite disk activation' (8597af76153a)")


def writable_nodes(graph: Mapping[str, Any]) -> set[str]:
    """Named block nodes some parent holds `write` on (x-debug-query-block-graph)."""
    names = {n.get("id"): str(n.get("name") or "") for n in graph.get("nodes") or []}
    return {names.get(edge.get("child"), "") for edge in graph.get("edges") or []
            if "write" in (edge.get("perm") or [])} - {""}


def inactive_nodes(before: set[str], graph: Mapping[str, Any],
                   named: Sequence[Mapping[str, Any]]) -> list[str]:
    """Block nodes inactive now: `active` false (QEMU >= 10.0, query-named-block-nodes),
    or writable `before` the migration and with no writer now."""
    flagged = {str(n.get("node-name")) for n in named if n.get("active") is False}
    return sorted(flagged | (before - writable_nodes(graph)))


def inactive_after_cancel(version: Optional[str], nodes: Sequence[str], status: str,
                          runstate: str, where: str) -> tuple[bool, str]:
    """(warn, message) for disks found inactive on a source after a cancel:
    WARN only on a QEMU older than the fix with the defect's signature
    (status 'cancelled', the guest running, nodes inactive); else FAIL."""
    evidence = (f"{where}: QEMU {version or '(version unknown)'}: block nodes "
                f"{', '.join(nodes)} inactive after migrate_cancel on the 'device' event, "
                f"migration status {status!r}, guest {runstate!r}")
    if DISKS_LEFT_INACTIVE.applies(version) and nodes and status == "cancelled" \
            and runstate == "running":
        return True, DISKS_LEFT_INACTIVE.warning(
            str(version), f"{evidence}; the verifying migration was not attempted "
                          f"(it would abort QEMU)")
    return False, f"{evidence}: the guest runs on disks its QEMU gave up (no known defect " \
                  f"of this QEMU)"


def version_key(version: str) -> tuple[int, ...]:
    """(10, 0, 2) for '10.0.2' (each part's leading digits; none: 0)."""
    out = []
    for part in version.split("."):
        digits = re.match(r"\d*", part)
        out.append(int(digits.group()) if digits and digits.group() else 0)
    return tuple(out)


def host_version(params: Mapping[str, Any], host: str) -> Optional[str]:
    """The full QEMU version of `host` (params `hosts` order), None if unknown."""
    versions = str(params.get("qemu_pair_versions") or "").split()
    hosts = [str(h) for h in (params.get("hosts") or [])]
    if host not in hosts or len(versions) != len(hosts):
        return None
    return versions[hosts.index(host)]


def postcopy_cancel_signature(src_status: str, dst_alive: bool, dst_incoming: str) -> bool:
    """The source took the cancel in postcopy and the destination lost the guest."""
    return src_status == "cancelled" and (not dst_alive or dst_incoming == "failed")


def two_copies_signature(src_status: str, dst_incoming: str, dst_runstate: str) -> bool:
    """The source says cancelled (and runs on); the destination loaded the
    whole stream and holds the guest, running or (7.2 seen both) paused."""
    return src_status == "cancelled" and dst_incoming == "completed" \
        and dst_runstate in ("running", "paused")


#: A cancel sent at most this long after QEMU emitted the 'device' event
#: went "on the event" (the scenario sends it at once).
ON_THE_EVENT_MS = 100


def outran_signature(lags_ms: Sequence[int], sourced: int) -> bool:
    """Every migration this host sourced completed although its cancel was
    sent on the 'device' event (`lags_ms`: event to cancel, one per attempt
    that completed; -1 when QEMU gave no timestamp)."""
    return sourced > 0 and len(lags_ms) == sourced \
        and all(0 <= lag <= ON_THE_EVENT_MS for lag in lags_ms)


__all__ = ["CANCEL_IN_DEVICE", "CANCEL_IN_POSTCOPY", "CancelDefect", "DISKS_LEFT_INACTIVE",
           "ON_THE_EVENT_MS", "TCG_LOST_WRITES_SEEN", "host_version", "inactive_after_cancel",
           "inactive_nodes", "major_minor", "outran_signature", "pair_versions",
           "postcopy_cancel_signature", "tcg_lost_writes_possible", "two_copies_signature",
           "version_key", "writable_nodes"]
