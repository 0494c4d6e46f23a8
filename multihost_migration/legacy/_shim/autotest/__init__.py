"""autotest, as legacy tests import it: served by multihost_migration.legacy."""
