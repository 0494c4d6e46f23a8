"""Postcopy migration: the guest runs on the destination before all its
RAM arrived; missing pages are fetched from the source on demand.

Params: `migration_capabilities = postcopy-ram` (both hosts),
`postcopy_after_passes = N` (the source switches to postcopy once N dirty
passes completed), `migrate_parameter_downtime-limit` small enough that
precopy alone never converges while the memory dirtier (`memdirty_mib`)
rewrites its pages, so the switch always happens: without it a quiet run
would complete in precopy and prove nothing.

What it verifies, and why: that the migration really went through
postcopy, not only that the capability was accepted.  On the source, after
the migration, query-migrate must report RAM sent in postcopy
(`ram.postcopy-bytes` > 0; the status `postcopy-active` seen in the
waiter's samples is the fallback for a QEMU without that counter); the
page requests of the destination (`postcopy-requests`) are recorded.  On
the destination the memory check then proves that every page, precopied or
fetched on demand, is intact.  With the capability off (precopy converging)
the test FAILs with "never switched to postcopy", the counters and the
statuses seen.

Timing: one migration of the 256 MiB guest, a few seconds under TCG.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import ram_counter
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._datapath import DatapathMigration, Evidence, where
from multihost_migration.verdicts import TestFail


def statuses_seen(samples: Sequence[Mapping[str, Any]]) -> list[str]:
    """The distinct statuses of the waiter's samples, in order."""
    seen: list[str] = []
    for sample in samples:
        status = str(sample.get("status"))
        if not seen or seen[-1] != status:
            seen.append(status)
    return seen


def check_postcopy(reply: Mapping[str, Any], statuses: Sequence[str],
                   capability: Optional[bool], context: str) -> Evidence:
    """TestFail unless the migration went through postcopy; `capability`:
    postcopy-ram as read back from the source (for the message)."""
    postcopy_bytes: Optional[int] = ram_counter(reply, "postcopy-bytes")
    requests = ram_counter(reply, "postcopy-requests")
    active = "postcopy-active" in statuses
    switched = postcopy_bytes > 0 if postcopy_bytes is not None else active
    if not switched:
        raise TestFail(f"{context}: never switched to postcopy: postcopy-bytes="
                       f"{postcopy_bytes}, postcopy-requests={requests}, statuses seen "
                       f"{' -> '.join(statuses) or 'none'} (capability postcopy-ram "
                       f"{'on' if capability else 'off'} on the source)")
    return {"postcopy_bytes": postcopy_bytes, "postcopy_requests": requests,
            "statuses": list(statuses)}


class PostcopyMigration(DatapathMigration):
    def source_evidence(self, vm: VM, reply: dict[str, Any],
                        mig_data: MigrationData) -> Evidence:
        samples = (mig_data.stats.get(vm.name) or {}).get("samples") or []
        capability = any(item.get("capability") == "postcopy-ram" and item.get("state")
                         for item in vm.qmp("query-migrate-capabilities"))
        return check_postcopy(reply, statuses_seen(samples), capability,
                              where(mig_data, vm.name, self.hostid))

    def migration_scenario(self) -> None:
        self.migrate_recorded(self.vms, self.hosts[0], self.hosts[1], self.start_work,
                              self.check_work, params_append={"last_round": "yes"})


def run(test: Any, params: Params, env: Env) -> None:
    PostcopyMigration(test, params, env).run()
