"""QEMU virtual machines: command line, launch, QMP, migration, shutdown."""

from .env import Env
from .stats import MigrationStats
from .vm import VM, VMState

__all__ = ["Env", "MigrationStats", "VM", "VMState"]
