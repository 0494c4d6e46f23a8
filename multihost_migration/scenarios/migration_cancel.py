"""A live migration cancelled mid-way leaves the source guest intact, and the
same guest migrates successfully afterwards.

mig1 (first host -> second host), slowed down by `cancel_bandwidth`
(max-bandwidth, default 16M) so it surely is in flight: the source polls
query-migrate every 0.1 s and issues migrate_cancel once `cancel_at_pct`
(default 30) % of the guest's RAM is done (progress = (total - remaining) /
total).  Then:

* source: QEMU reports `cancelled`, the guest is `running` and the memory
  dirtier's invariant holds on every page (nothing was lost by the aborted
  stream); the dirtier restarts for mig2;
* destination: the incoming QEMU ends (it exits when the stream breaks)
  within `cancel_incoming_timeout` (30) s and is destroyed; an incoming side
  that `completed`, or is still waiting then, is a FAIL.

mig2 (same direction, no bandwidth limit) must complete, and the destination
verifies the memory dirtier and the disk pattern written before mig1.


Timing (2 shared cores, TCG): this guest's RAM progress is linear up to
~40 % (its ~65 MiB of data at 16 MiB/s: 0.6 % per 0.1 s), then jumps to 95 %
(zero pages), so 30 % is reached after ~2.5 s, mid-way through the data, and
a poll late by a second still cancels before 40 %.  Run time ~30 s.
"""

from __future__ import annotations

from typing import Any

from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.scenarios._cancel import (CancelMigration, CancelTrigger,
                                                   ram_progress_pct)


class CancelScenario(CancelMigration):
    def migration_scenario(self) -> None:
        src, dst = self.hosts[0], self.hosts[1]
        self.migrate_wait(self.vms, src, dst, self.start_work, None, params_append={
            "migrate_parameter_max-bandwidth": self.params.get("cancel_bandwidth", "16M"),
            "cancel_trigger_pct": self.params.get("cancel_at_pct", "40"),
            "last_round": "no"})
        self.migrate_wait(self.vms, src, dst, None, self.check_work,
                          params_append={"last_round": "yes"})


def run(test: Any, params: Params, env: Env) -> None:
    CancelScenario(test, params, env).run()


__all__ = ["CancelMigration", "CancelScenario", "CancelTrigger", "ram_progress_pct", "run"]
