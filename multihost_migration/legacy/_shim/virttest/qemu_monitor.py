"""virttest.qemu_monitor (legacy API): its exceptions are the suite's QMP errors."""
from multihost_migration.errors import QMPCommandError, QMPError

MonitorError = QMPError
MonitorConnectError = QMPError
MonitorSocketError = QMPError
MonitorLockError = QMPError
MonitorProtocolError = QMPError
MonitorNotSupportedError = QMPError
MonitorNotSupportedCmdError = QMPCommandError
MonitorNotSupportedMigCapError = QMPCommandError
QMPCmdError = QMPCommandError
HumanCmdError = QMPCommandError
QMPEventError = QMPError

__all__ = ["HumanCmdError", "MonitorConnectError", "MonitorError", "MonitorLockError",
           "MonitorNotSupportedCmdError", "MonitorNotSupportedError",
           "MonitorNotSupportedMigCapError", "MonitorProtocolError", "MonitorSocketError",
           "QMPCmdError", "QMPEventError"]
