"""Shared by the scenarios of current QEMU's migration features (issue #18):
postcopy preempt and recovery, multifd compression, validate-uuid, a
cancel in each state, file migration with mapped-ram, zero-page detection.

Each of them declares the QEMU features it needs (`qemu_features`, QMP
schema names): the controller runs it only on a pair whose QEMUs both have
them (else TEST_NA), and a scenario may ask the plan of a migration
`supports(feature)` (the answer comes from each host's query-qmp-schema).

Here:
* `status_event(statuses)`: a match for QMP MIGRATION events;
* `wait_status(vm, statuses, timeout)`: poll query-migrate until one of
  `statuses`, remembering every status seen (QEMU's own state is the
  evidence), MigrationError naming them at the deadline;
* `FeatureMigration`: a DatapathMigration whose `plan(src, dst)` is the
  plan a migration with these params would get, for questions asked before
  it starts (`self.plan(...).supports("postcopy-preempt")`).

Not a scenario itself (no `run`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Collection, Optional

from multihost_migration.errors import MigrationError
from multihost_migration.params import Params
from multihost_migration.plan import MigrationPlan
from multihost_migration.qemu.stats import ram_counter
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._datapath import DatapathMigration

#: Seconds between query-migrate polls of wait_status.
POLL = 0.05

Event = dict[str, Any]


def status_event(statuses: Collection[str]) -> Callable[[Event], bool]:
    """Matches a MIGRATION event whose status is one of `statuses`."""
    def match(event: Event) -> bool:
        return (event.get("event") == "MIGRATION"
                and (event.get("data") or {}).get("status") in statuses)
    return match


def wait_status(vm: VM, statuses: Collection[str], timeout: float,
                seen: Optional[list[str]] = None,
                until: Optional[Callable[[dict[str, Any]], bool]] = None) -> dict[str, Any]:
    """query-migrate of `vm` until its status is one of `statuses` (and
    `until(reply)` holds, if given); the reply.  Every distinct status goes
    into `seen`, in order.  MigrationError at the deadline, naming them."""
    seen = [] if seen is None else seen
    deadline = time.monotonic() + timeout
    while True:
        reply = vm.query_migrate()
        status = str(reply.get("status"))
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in statuses and (until is None or until(reply)):
            return reply
        if time.monotonic() >= deadline:
            raise MigrationError(f"{vm.name}: migration not {'/'.join(statuses)} within "
                                 f"{timeout:.0f} s; statuses seen {' -> '.join(seen)}; "
                                 f"{reply.get('error-desc', '')}\n{vm.log_tail()}")
        time.sleep(POLL)


def passes_at_least(count: int) -> Callable[[dict[str, Any]], bool]:
    """`until` of wait_status: at least `count` dirty-sync passes done."""
    return lambda reply: (ram_counter(reply, "dirty-sync-count") or 0) >= count


def capability_on(vm: VM, name: str) -> bool:
    """Capability `name` as QEMU reports it now."""
    return any(item.get("capability") == name and item.get("state")
               for item in vm.qmp("query-migrate-capabilities"))


class FeatureMigration(DatapathMigration):
    """DatapathMigration that can ask, before a migration, what the pair's
    QEMUs support (their QMP schemas, found by preflight)."""

    def plan(self, src: str, dst: str,
             params_append: Optional[dict[str, Any]] = None) -> MigrationPlan:
        params = Params(self.params)
        params.update(params_append or {})
        return MigrationPlan.from_params(params, mig_id="next", src=src, dst=dst,
                                         vms=self.vms)


__all__ = ["FeatureMigration", "POLL", "capability_on", "passes_at_least", "status_event",
           "wait_status"]
