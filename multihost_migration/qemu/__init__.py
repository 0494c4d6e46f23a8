"""QEMU virtual machines: command line, launch, QMP, migration, shutdown.

The names below load on first use (PEP 562), so that importing a pure
parser of this package (qemu.config, qemu.tls, qemu.stats, qemu.transport),
as the controller does, does not load the process, QMP and console code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .env import Env
    from .migration import MigrateRequest
    from .settings import MigrationSettings
    from .stats import MigrationStats
    from .transport import Transport
    from .vm import VM, VMState

_EXPORTS = {"Env": ".env", "MigrateRequest": ".migration", "MigrationSettings": ".settings",
            "MigrationStats": ".stats", "Transport": ".transport", "VM": ".vm",
            "VMState": ".vm"}

__all__ = ["Env", "MigrateRequest", "MigrationSettings", "MigrationStats", "Transport", "VM",
           "VMState"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
