"""virttest.virt_vm (legacy API): its exceptions are the suite's."""
from multihost_migration.errors import (LoginError, MigrationError, MigrationFailed,
                                        MigrationTimeout, VMDiedError, VMError,
                                        VMLaunchError, VMStateError)

VMMigrateError = MigrationError
VMMigrateFailedError = MigrationFailed
VMMigrateTimeoutError = MigrationTimeout
VMMigrateCancelError = MigrationError
VMMigrateStateMismatchError = MigrationError
VMDeadError = VMDiedError
VMCreateError = VMLaunchError
VMStatusError = VMStateError
VMRebootError = LoginError
VMAddressError = VMError

__all__ = ["VMAddressError", "VMCreateError", "VMDeadError", "VMError", "VMMigrateCancelError",
           "VMMigrateError", "VMMigrateFailedError", "VMMigrateStateMismatchError",
           "VMMigrateTimeoutError", "VMRebootError", "VMStatusError"]
