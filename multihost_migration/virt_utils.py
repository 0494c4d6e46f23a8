"""Compatibility names for scenario code written for the legacy stack.

The user guide's scenarios say `virt_utils.MultihostMigration`; with
`from multihost_migration import virt_utils` they run unchanged.
"""

from multihost_migration.migration import MigrationData, MigrationThread, MultihostMigration

__all__ = ["MigrationData", "MigrationThread", "MultihostMigration"]
