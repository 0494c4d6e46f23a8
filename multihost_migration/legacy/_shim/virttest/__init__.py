"""virttest, as legacy tests import it: served by multihost_migration.legacy
(only in a legacy client job; elsewhere `import virttest` is the real one)."""
