"""Postcopy recovery: the hosts lose each other during postcopy, the
migration is paused, the network heals, and the migration recovers
(migrate-recover on the destination, migrate resume=true on the source)
with the guest's memory and disk intact on the destination.

How, and what proves it (QEMU's statuses and counters, the guest's own
checks, the time from the heal to completion): see RecoverMigration in
_recover.py.  Params: `migration_capabilities = postcopy-ram`,
`qemu_features = postcopy-ram migrate-pause migrate-recover`,
`recover_partition_s` (how long the hosts are cut off before the pause).
"""

from __future__ import annotations

from typing import Any

from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.scenarios._recover import RecoverMigration


class PostcopyRecoverScenario(RecoverMigration):
    def migration_scenario(self) -> None:
        self.migrate_recorded(self.vms, self.hosts[0], self.hosts[1], self.start_work,
                              self.check_work, params_append={"last_round": "yes"})


def run(test: Any, params: Params, env: Env) -> None:
    PostcopyRecoverScenario(test, params, env).run()
