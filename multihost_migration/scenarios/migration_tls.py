"""Migration over x509 TLS: refused with a foreign CA, completed with the
job's own.

Params: `migration_tls = x509` (MultihostMigration makes the job's
credentials on shared storage, naming every host), the memory dirtier
(`memdirty_mib`) of IntegrityMigration.

What it verifies, and why:

1. mig1: the destination's QEMU holds credentials from another CA (made
   here, same host names, in a job-unique directory on the shared storage,
   removed at the end).  Both endpoints verify their peer, so the TLS
   handshake must fail: the migration must fail on the source, the guest
   must not run on the destination (whose QEMU logs the handshake error
   and keeps listening), and the source guest
   must keep running with its memory intact (memory check on the source).
   A migration that completes here means peer verification is not in
   force: FAIL.  (`tls_other_ca = no` gives the destination the right
   credentials instead: the lab test of this FAIL.)
2. mig2: both hold the job's credentials: the migration completes, the
   memory is checked on the destination, and TLS was in force: the
   tls-creds parameter reads back as the client credentials on the source
   and the server credentials on the destination.

Timing: two migrations of the 256 MiB guest, the first failing at the
handshake (well under a second); waits are those of the framework.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from multihost_migration.errors import (ConfigError, GuestCheckError, MigrationError,
                                        MigrationFailed)
from multihost_migration.guest.checks import MemoryDirtier
from multihost_migration.imagespec import images_dir
from multihost_migration.migration import MigrationData, MultihostMigration
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.tls import CLIENT_ID, SERVER_ID, make_tls_credentials
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._datapath import DatapathMigration, Evidence, where
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

#: mig_data.params key: the destination VM's credentials directory for that migration.
DEST_TLS_DIR = "tls_dest_dir"


def check_tls_creds(read_back: Any, expected: str, context: str) -> Evidence:
    """TestFail unless the migration's tls-creds parameter is `expected`."""
    if read_back != expected:
        raise TestFail(f"{context}: TLS was not in force: tls-creds reads back "
                       f"{read_back!r}, expected {expected!r}")
    return {"tls_creds": read_back}


class TLSMigration(DatapathMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        if str(params.get("migration_tls") or "") != "x509":
            raise ConfigError(f"{self.hostid}: the tls scenario needs migration_tls = x509, "
                              f"has {params.get('migration_tls')!r}")
        self.other_ca = str(Path(images_dir(params)) / f"mhm-tls-{self.job_id}-otherca")
        self.wrong_ca = params.get_bool("tls_other_ca", True)
        self._made_other_ca = False
        self.refused: dict[str, str] = {}   # mig_id -> the source's error

    # -- the destination's credentials for one migration ----------------------

    def before_migration(self, mig_data: MigrationData) -> None:
        if mig_data.is_dst() and mig_data.params.get(DEST_TLS_DIR) == self.other_ca \
                and not self._made_other_ca:
            names = set(self.hosts) | {self.address_of(h) for h in self.hosts}
            make_tls_credentials(self.other_ca, "x509", sorted(names))
            self._made_other_ca = True
            log.info("%s: credentials from another CA in %s", self.hostid, self.other_ca)

    def vm_params_for(self, mig_data: MigrationData, name: str, role: str) -> dict[str, Any]:
        params = super().vm_params_for(mig_data, name, role)
        directory = mig_data.params.get(DEST_TLS_DIR)
        if role == "dst" and directory:
            params["migration_tls_dir"] = str(directory)
        return params

    def _refusal(self, mig_data: MigrationData) -> bool:
        """mig1: a migration the destination's credentials must make fail."""
        return bool(mig_data.params.get(DEST_TLS_DIR))

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        if not self._refusal(mig_data):
            super().migrate_vms_src(mig_data)
            return
        try:
            # the base without IntegrityMigration's post-mortem: check_vms_src
            # checks the source guest
            MultihostMigration.migrate_vms_src(self, mig_data)
        except MigrationError as err:
            self.refused[mig_data.mig_id] = str(
                err.error_desc if isinstance(err, MigrationFailed) and err.error_desc
                else err)
            log.info("%s %s->%s: refused, as expected: %s", mig_data.mig_id, mig_data.src,
                     mig_data.dst, self.refused[mig_data.mig_id])
            return
        dest = mig_data.params.get(DEST_TLS_DIR)
        held = (f"credentials from another CA ({dest})" if self.wrong_ca
                else f"the source's own credentials ({dest}; tls_other_ca = no)")
        raise TestFail(f"{'+'.join(mig_data.vms_name)} in {mig_data.mig_id} "
                       f"{mig_data.src}->{mig_data.dst} (on {self.hostid}): the migration "
                       f"completed although it had to be refused: the destination held "
                       f"{held}: TLS peer verification is not in force")

    def check_vms_src(self, mig_data: MigrationData) -> None:
        if not self._refusal(mig_data):
            super().check_vms_src(mig_data)
            return
        for vm in mig_data.vms:   # the guest must run on here, intact
            context = where(mig_data, vm.name, self.hostid)
            status = vm.query_status() if vm.is_alive() else "gone"
            if status != "running":
                raise TestFail(f"{context}: after the refused migration the source guest "
                               f"is {status!r}, not running")
            try:
                result = MemoryDirtier(self._console(vm.name)).check()
            except GuestCheckError as err:
                raise TestFail(f"{context}: the source guest's memory is corrupted after "
                               f"the refused migration: {err}") from err
            self._record(mig_data, vm.name, {
                "refused": self.refused.get(mig_data.mig_id),
                "source_guest": f"running, memory intact ({result.pages} pages checked)"})

    def wait_vms_dest(self, mig_data: MigrationData) -> None:
        if not self._refusal(mig_data):
            super().wait_vms_dest(mig_data)
            return
        # QEMU reports a failed TLS handshake in its log and keeps listening
        # for another connection: the guest must not run here.
        for vm in mig_data.vms:
            alive = vm.is_alive()
            status = vm.query_status() if alive else "gone"
            incoming = str(vm.query_migrate().get("status", "none")) if alive else "gone"
            if status == "running" or incoming == "completed":
                raise TestFail(f"{where(mig_data, vm.name, self.hostid)}: the guest runs "
                               f"here (incoming {incoming}) although this QEMU holds "
                               f"credentials from another CA")
            errors = [line for line in vm.log_tail().splitlines()
                      if line.startswith("qemu-system") and "signal" not in line]
            self._record(mig_data, vm.name, {"incoming": incoming, "guest": status,
                                             "qemu_log": errors[-3:]})

    def check_vms_dst(self, mig_data: MigrationData) -> None:
        if not self._refusal(mig_data):
            super().check_vms_dst(mig_data)

    # -- evidence -------------------------------------------------------------

    def _tls_creds(self, vm: VM) -> Any:
        return vm.qmp("query-migrate-parameters").get("tls-creds")

    def source_evidence(self, vm: VM, reply: dict[str, Any],
                        mig_data: MigrationData) -> Evidence:
        return check_tls_creds(self._tls_creds(vm), CLIENT_ID,
                               where(mig_data, vm.name, self.hostid))

    def dest_evidence(self, vm: VM, mig_data: MigrationData) -> Evidence:
        return check_tls_creds(self._tls_creds(vm), SERVER_ID,
                               where(mig_data, vm.name, self.hostid))

    # -- the scenario ---------------------------------------------------------

    def migration_scenario(self) -> None:
        src, dst = self.hosts[0], self.hosts[1]
        # self.tls: the job's own credentials (x509, checked in __init__)
        dest_dir = self.other_ca if self.wrong_ca or self.tls is None else self.tls.directory
        self.migrate_recorded(self.vms, src, dst, self.start_work, None,
                              params_append={DEST_TLS_DIR: dest_dir})
        self.migrate_recorded(self.vms, src, dst, self.start_work_memory_only,
                              self.check_work, params_append={"last_round": "yes"})

    def start_work_memory_only(self, mig_data: MigrationData) -> None:
        """Source, before mig2: restart the dirtier the refusal check stopped."""
        for name in mig_data.vms_name:
            MemoryDirtier(self._console(name)).start(self.memdirty_mib,
                                                     tcg_workaround=self.tlb_churn)

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            if self._made_other_ca:
                shutil.rmtree(self.other_ca, ignore_errors=True)


def run(test: Any, params: Params, env: Env) -> None:
    TLSMigration(test, params, env).run()
