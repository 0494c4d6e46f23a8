"""validate-uuid: a destination whose VM has another UUID refuses the
stream; the same guest then migrates to a destination with its own UUID.

Both hosts start the guest with `-uuid` (`vm_uuid`); capability
validate-uuid on both (`migration_capabilities = validate-uuid`,
`qemu_features = validate-uuid`).

* mig1 (first host -> second): the destination's QEMU gets `dst_uuid`
  instead.  It must refuse the stream: its incoming migration fails and
  its QEMU log says why ("UUID received is <src> and local is <dst>",
  QEMU's own message); the source's migration fails, its guest runs on
  with every page of the memory dirtier intact (CancelMigration's checks).
* mig2 (same direction, same UUID): completes; memory and disk verified.
"""

from __future__ import annotations

import logging
from typing import Any

from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.scenarios._cancel import CancelMigration
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

DEFAULT_UUID = "8a4b1e2c-5d6f-4a7b-9c8d-0e1f2a3b4c5d"
OTHER_UUID = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"


class ValidateUuidMigration(CancelMigration):
    def vm_params_for(self, mig_data: MigrationData, name: str, role: str) -> dict[str, Any]:
        params = super().vm_params_for(mig_data, name, role)
        uuid = str(mig_data.params.get("vm_uuid", DEFAULT_UUID))
        if role == "dst":
            uuid = str(mig_data.params.get("dst_uuid", uuid))
        params["extra_params"] = f"{params.get('extra_params', '')} -uuid {uuid}".strip()
        return params

    def wait_vms_dest(self, mig_data: MigrationData) -> None:
        super().wait_vms_dest(mig_data)
        if not self.is_aborted_kind(mig_data):
            return
        for vm in mig_data.vms:
            text = vm.qemu_log_path.read_text(errors="replace")
            refusal = [line for line in text.splitlines() if "UUID received is" in line]
            if not refusal:
                raise TestFail(f"{vm.name} on {self.hostid}: the destination (UUID "
                               f"{mig_data.params.get('dst_uuid')}) did not refuse the stream "
                               f"for its UUID; QEMU log: {text[-600:]}")
            self.outcomes[mig_data.mig_id] = f"refused: {refusal[0].strip()}"
            log.info("%s: the destination refused the stream: %s", mig_data.mig_id,
                     refusal[0].strip())

    def migration_scenario(self) -> None:
        src, dst = self.hosts[0], self.hosts[1]
        other = str(self.params.get("dst_uuid", OTHER_UUID))
        self.migrate_wait(self.vms, src, dst, self.start_work, None, params_append={
            "expect_failure": "yes", "dst_uuid": other, "last_round": "no"})
        self.migrate_wait(self.vms, src, dst, None, self.check_work,
                          params_append={"last_round": "yes"})


def run(test: Any, params: Params, env: Env) -> None:
    ValidateUuidMigration(test, params, env).run()
