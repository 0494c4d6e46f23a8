"""autotest.client.shared.syncdata (legacy API): the suite's sync server."""
from multihost_migration.legacy.sync import SyncData

__all__ = ["SyncData"]
