"""autotest.client.shared.utils (legacy API): host helpers."""
from multihost_migration.legacy.hostutils import (CmdResult, InterruptedThread, Statistic,
                                                  convert_data_size, hash_file, run, system,
                                                  system_output)

__all__ = ["CmdResult", "InterruptedThread", "Statistic", "convert_data_size", "hash_file",
           "run", "system", "system_output"]
