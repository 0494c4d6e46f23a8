"""virttest.error_context (legacy API): autotest's error contexts."""
from multihost_migration.legacy.error import context, context_aware, get_context

__all__ = ["context", "context_aware", "get_context"]
