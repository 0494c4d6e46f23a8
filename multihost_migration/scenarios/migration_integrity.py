"""Migrations whose result is verified inside the guest, round after round.

Before the first migration, on the source: start the memory dirtier
(QEMU migration-test style: every page's byte incremented in page order,
`memdirty_mib` MiB), write a pseudo-random pattern on the disk
(`disk_check_mib` MiB), start the heartbeat if `heartbeat = yes`.

`migrate_count` rounds ping-pong between the first two hosts.  After each
round, on the destination: the memory invariant holds on every page (no page
lost or stale), the disk pattern reads back identical, the guest-observed
downtime (largest heartbeat gap) is recorded; then the dirtier restarts for
the next round.

Under TCG (`accel = tcg`, `tcg_tlb_workaround = auto`) a spinning guest
process forces task switches; see MemoryDirtier.start for the QEMU 7.2
behaviour it works around.

If a migration fails (a fault: a peer died, the network partitioned), the
source checks that its guest still runs and still passes the memory check,
and the test FAILs with the migration's own error plus that finding.
"""

from __future__ import annotations

from typing import Any

from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.scenarios._integrity import IntegrityMigration


class IntegrityScenario(IntegrityMigration):
    def migration_scenario(self) -> None:
        self.ping_pong()


def run(test: Any, params: Params, env: Env) -> None:
    IntegrityScenario(test, params, env).run()


__all__ = ["IntegrityMigration", "IntegrityScenario", "run"]
