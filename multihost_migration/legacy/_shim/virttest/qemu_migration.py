"""virttest.qemu_migration (legacy API)."""
from multihost_migration.legacy.misc import set_downtime, set_speed

__all__ = ["set_downtime", "set_speed"]
