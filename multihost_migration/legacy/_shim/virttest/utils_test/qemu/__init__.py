"""virttest.utils_test.qemu (legacy API)."""
from multihost_migration.legacy.vm import guest_active

__all__ = ["guest_active"]
