"""virttest.env_process (legacy API): VMs started by the running migration."""
from multihost_migration.legacy.env import (postprocess, preprocess, preprocess_image,
                                            preprocess_vm, process)

__all__ = ["postprocess", "preprocess", "preprocess_image", "preprocess_vm", "process"]
