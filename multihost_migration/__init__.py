"""Live-migration tests of QEMU guests between hosts that share storage.

Scenario code may say `from multihost_migration import MultihostMigration`
(and MigrationData, MigrationThread).  Those names are imported on first
use (a module `__getattr__`, PEP 562): `import multihost_migration` alone,
as the controller does for `__version__`, loads no QEMU, QMP or console
code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: The names served from migration.py on first use.
LAZY_NAMES = ("MigrationData", "MigrationThread", "MultihostMigration")

if TYPE_CHECKING:
    from multihost_migration.migration import (MigrationData, MigrationThread,
                                               MultihostMigration)


def __getattr__(name: str) -> Any:
    if name not in LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from multihost_migration import migration
    value = getattr(migration, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(LAZY_NAMES))


__all__ = ["MigrationData", "MigrationThread", "MultihostMigration", "__version__"]
