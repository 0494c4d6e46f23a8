"""autotest.client.shared.barrier (legacy API)."""
from multihost_migration.legacy.sync import listen_server

__all__ = ["listen_server"]
