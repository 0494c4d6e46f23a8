"""virttest.utils_test (legacy API)."""
from multihost_migration.legacy.misc import get_time, run_autotest, run_virt_sub_test

from . import qemu

__all__ = ["get_time", "qemu", "run_autotest", "run_virt_sub_test"]
