"""Private import root of the legacy API (legacy/switch.py puts it on sys.path in
legacy client jobs only): `autotest` and `virttest` re-export multihost_migration.legacy."""
