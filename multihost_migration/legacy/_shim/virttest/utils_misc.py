"""virttest.utils_misc (legacy API)."""
from multihost_migration.legacy.hostutils import InterruptedThread
from multihost_migration.legacy.misc import find_free_port, generate_random_string, wait_for

__all__ = ["InterruptedThread", "find_free_port", "generate_random_string", "wait_for"]
