"""virttest.data_dir (legacy API): directories of the test checkout."""
from multihost_migration.legacy.misc import (get_data_dir, get_deps_dir, get_root_dir,
                                             get_tmp_dir)

__all__ = ["get_data_dir", "get_deps_dir", "get_root_dir", "get_tmp_dir"]
