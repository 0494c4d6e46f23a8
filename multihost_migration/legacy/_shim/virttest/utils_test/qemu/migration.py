"""virttest.utils_test.qemu.migration (legacy API): the suite's engine."""
from multihost_migration.legacy.migration import (MigrationBase, MigrationData,
                                                  MultihostMigration, MultihostMigrationExec,
                                                  MultihostMigrationFd, MultihostMigrationRdma,
                                                  guest_active, set_downtime, set_speed)

__all__ = ["MigrationBase", "MigrationData", "MultihostMigration", "MultihostMigrationExec",
           "MultihostMigrationFd", "MultihostMigrationRdma", "guest_active", "set_downtime",
           "set_speed"]
