"""What a legacy test gets as `env` and `test`, and virttest.env_process.

LegacyEnv is the client job's Env (VMs registered there are the ones the
job stops at its end) plus virttest's dict face (`env.get("address_cache")`).
LegacyTest is the client's test object plus the legacy attributes
(bindir, virtdir, job, error(), fail(), cancel()).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Optional

from multihost_migration.legacy import context
from multihost_migration.legacy.unsupported import unsupported
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.vm import VM
from multihost_migration.verdicts import TestError, TestFail, TestNAError

log = logging.getLogger(__name__)


class LegacyEnv(Env):
    """The job's Env with virttest's dict face; VMs live in the job's Env."""

    def __init__(self, inner: Env) -> None:
        super().__init__()
        self._inner = inner
        self._data: dict[str, Any] = {"address_cache": {}}

    def get_vm(self, name: str) -> Optional[VM]:
        return self._inner.get_vm(name)

    def register_vm(self, name: str, vm: VM) -> None:
        self._inner.register_vm(name, vm)

    def unregister_vm(self, name: str) -> Optional[VM]:
        return self._inner.unregister_vm(name)

    def get_all_vms(self) -> list[VM]:
        return self._inner.get_all_vms()

    def __iter__(self) -> Iterator[VM]:
        return iter(self.get_all_vms())

    def destroy_all(self, gracefully: bool = False, timeout: float = 30.0) -> None:
        self._inner.destroy_all(gracefully, timeout)

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def keys(self) -> list[str]:
        return list(self._data)

    def save(self, filename: Any = None) -> None:
        """Legacy env files are not kept (the suite's state is the job's)."""


class _LegacyJob:
    """test.job: what legacy tests ask of the autotest job."""

    def setup_dep(self, deps: Any) -> None:
        raise TestNAError(f"the test builds autotest dependencies {deps} (test.job.setup_dep): "
                          "this suite runs no autotest client")

    def __getattr__(self, name: str) -> Any:
        raise unsupported(f"test.job.{name}")


class LegacyTest:
    """The client's test object with the legacy attributes on top."""

    def __init__(self, test: Any, root: Optional[Path]) -> None:
        self._test = test
        self.virtdir = self.bindir = self.autodir = str(root or Path(test.outputdir))
        self.srcdir = self.tmpdir = str(test.outputdir)
        self.job = _LegacyJob()
        self.log = logging.getLogger("avocado.test")

    def error(self, message: str) -> None:
        raise TestError(message)

    def fail(self, message: str) -> None:
        raise TestFail(message)

    def cancel(self, message: str) -> None:
        raise TestNAError(message)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(self._test, name)
        except AttributeError:
            raise unsupported(f"test.{name}") from None


# -- virttest.env_process ---------------------------------------------------------

def preprocess_image(test: Any, params: Any, env: Any, image_name: Any = None) -> None:
    """The disks are the migration's (MultihostMigration prepared them)."""


def preprocess_vm(test: Any, params: Any, env: Any, name: str) -> None:
    """Start VM `name` on this host unless it runs (start_vm = yes)."""
    migration = context.current("env_process.preprocess_vm").migration
    if migration is None:
        raise unsupported("env_process.preprocess_vm",
                          "only while a MultihostMigration of the test exists")
    vm = env.get_vm(name)
    wanted = Params(params).get_bool("start_vm", True)
    if wanted and (vm is None or not vm.is_alive()):
        migration.boot_vm(name)


def process(test: Any, params: Any, env: Any, image_func: Any, vm_func: Any,
            vm_first: bool = False) -> None:
    """Run `vm_func` (and `image_func`) for each VM of `params`."""
    for name in Params(params).objects("vms"):
        if image_func is not None:
            image_func(test, params, env)
        vm_func(test, params, env, name)


def preprocess(test: Any, params: Any, env: Any) -> None:
    process(test, params, env, preprocess_image, preprocess_vm)


def postprocess(test: Any, params: Any, env: Any) -> None:
    """The client job stops the VMs at its end."""
