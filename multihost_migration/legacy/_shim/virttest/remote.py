"""virttest.remote (legacy API): errors, and network logins/copies (which
need the guest's network: TEST_NA until it has one)."""
from typing import Any

from multihost_migration.errors import GuestError, LoginError, RemoteError
from multihost_migration.legacy.vm import NO_NETWORK
from multihost_migration.verdicts import TestNAError

LoginTimeoutError = LoginError
LoginAuthenticationError = LoginError
LoginProcessTerminatedError = LoginError
SCPError = RemoteError
SCPTransferFailedError = RemoteError
TransferError = GuestError


def wait_for_login(client: str, host: str, *args: Any, **kwargs: Any) -> Any:
    raise TestNAError(f"remote.wait_for_login({client!r}, {host!r}): {NO_NETWORK}")


def copy_files_to(address: str, client: str, *args: Any, **kwargs: Any) -> None:
    raise TestNAError(f"remote.copy_files_to({address!r}): {NO_NETWORK}")


def copy_files_from(address: str, client: str, *args: Any, **kwargs: Any) -> None:
    raise TestNAError(f"remote.copy_files_from({address!r}): {NO_NETWORK}")


__all__ = ["LoginAuthenticationError", "LoginError", "LoginProcessTerminatedError",
           "LoginTimeoutError", "SCPError", "SCPTransferFailedError", "TransferError",
           "copy_files_from", "copy_files_to", "wait_for_login"]
