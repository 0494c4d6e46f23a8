"""Multifd zero-page detection: `none` vs `multifd` (QEMU 9.0+).

Two migrations of the same guest with multifd: there (first host ->
second) with `zero-page-detection = none`, back with `multifd` (the
channels detect zero pages themselves).  `qemu_features =
zero-page-detection:none zero-page-detection:multifd`: on a QEMU whose
schema has no such parameter (7.2) the test is TEST_NA.

Proven by QEMU's counters on each source: the parameter reads back as
set; with `none` no page is counted as a zero page (`ram.duplicate` = 0)
and every page went as a normal page; with `multifd` the mostly untouched
guest RAM shows as zero pages (`ram.duplicate` > half of its pages) and
the normal bytes shrink accordingly.  The memory dirtier is checked after
each migration.
"""

from __future__ import annotations

from typing import Any

from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import ram_counter
from multihost_migration.qemu.vm import VM
from multihost_migration.scenarios._datapath import Evidence, where
from multihost_migration.scenarios._modern import FeatureMigration
from multihost_migration.verdicts import TestFail

PAGE = 4096


def check_zero_pages(reply: dict[str, Any], mode: str, read_back: Any,
                     context: str) -> Evidence:
    zero = ram_counter(reply, "duplicate") or 0
    normal = ram_counter(reply, "normal") or 0
    total_pages = (ram_counter(reply, "total") or 0) // PAGE
    found = {"zero_page_detection": read_back, "zero_pages": zero, "normal_pages": normal,
             "ram_pages": total_pages}
    problems = []
    if read_back != mode:
        problems.append(f"zero-page-detection reads back {read_back!r}, set {mode!r}")
    if mode == "none" and (zero != 0 or normal < total_pages // 2):
        problems.append(f"with none: {zero} zero pages (expected 0), {normal} normal "
                        f"pages of {total_pages}")
    if mode == "multifd" and zero <= total_pages // 2:
        problems.append(f"with multifd: only {zero} zero pages of {total_pages}")
    if problems:
        raise TestFail(f"{context}: {'; '.join(problems)} ({found})")
    return found


class ZeroPageMigration(FeatureMigration):
    def source_evidence(self, vm: VM, reply: dict[str, Any],
                        mig_data: MigrationData) -> Evidence:
        mode = str(mig_data.params.get("migrate_parameter_zero-page-detection"))
        read_back = vm.qmp("query-migrate-parameters").get("zero-page-detection")
        return check_zero_pages(reply, mode, read_back,
                                where(mig_data, vm.name, self.hostid))

    def migration_scenario(self) -> None:
        first, second = self.hosts[0], self.hosts[1]
        self.migrate_recorded(self.vms, first, second, self.start_work, self.check_work,
                              params_append={"migrate_parameter_zero-page-detection": "none",
                                             "last_round": "no"})
        self.migrate_recorded(self.vms, second, first, None, self.check_work,
                              params_append={"migrate_parameter_zero-page-detection":
                                             "multifd", "last_round": "yes"})


def run(test: Any, params: Params, env: Env) -> None:
    ZeroPageMigration(test, params, env).run()
