"""A running QEMU as the migration code sees it: its QMP channel and its process.

`QemuLink` is what the migration waiter (migration.py) and the settings
(settings.py) work through instead of the VM: QMP commands, and, when a
command fails because QEMU is gone, a `VMDiedError` with its exit status
and log tail instead of a bare QMP error.  It has no lifecycle of its own:
the VM creates one per QEMU process and drops it when the process ends.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from ..errors import QMPError, VMDiedError
from .process import QemuProcess
from .qmp_channel import QMPChannel
from .stats import MigrationStats

#: Bytes of the QEMU log carried by errors.
LOG_TAIL_BYTES = 4096
#: Seconds to wait for the process to exit when a QMP command failed.
EXIT_GRACE = 0.2


class QemuLink:
    """One QEMU process's QMP channel, under its VM's name and logger."""

    def __init__(self, name: str, channel: QMPChannel, process: QemuProcess,
                 log: logging.Logger) -> None:
        self.name = name
        self.channel = channel
        self.process = process
        self.log = log

    def execute(self, command: str, arguments: Optional[dict[str, Any]] = None,
                timeout: float = 30.0) -> Any:
        """A QMP command; VMDiedError if it failed because QEMU exited."""
        try:
            return self.channel.execute(command, arguments or None, timeout=timeout)
        except QMPError as err:
            if not self.process.wait(EXIT_GRACE):
                raise
            raise VMDiedError(self.name, self.process.returncode, self.log_tail()) from err

    def is_alive(self) -> bool:
        return self.process.is_alive()

    def log_tail(self, max_bytes: int = LOG_TAIL_BYTES) -> str:
        return self.process.tail(max_bytes)

    def query_migrate(self) -> dict[str, Any]:
        return dict(self.execute("query-migrate"))

    def migration_stats(self) -> MigrationStats:
        return MigrationStats.from_query(self.query_migrate())

    def query_status(self) -> str:
        return str(self.execute("query-status")["status"])
