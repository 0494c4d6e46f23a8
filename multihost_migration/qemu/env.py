"""The environment: the VMs a test works with, by name."""

from __future__ import annotations

import logging
import threading
from typing import Iterator, Optional

from ..errors import MigrationTestError
from .vm import VM

LOG = logging.getLogger(__name__)


class Env:
    """Registry of VMs by name; thread-safe."""

    def __init__(self) -> None:
        self._vms: dict[str, VM] = {}
        self._lock = threading.Lock()

    def get_vm(self, name: str) -> Optional[VM]:
        with self._lock:
            return self._vms.get(name)

    def register_vm(self, name: str, vm: VM) -> None:
        with self._lock:
            self._vms[name] = vm

    def unregister_vm(self, name: str) -> Optional[VM]:
        with self._lock:
            return self._vms.pop(name, None)

    def get_all_vms(self) -> list[VM]:
        with self._lock:
            return list(self._vms.values())

    def __iter__(self) -> Iterator[VM]:
        return iter(self.get_all_vms())

    def destroy_all(self, gracefully: bool = False, timeout: float = 30.0) -> None:
        """Destroy every VM (all are tried); re-raise the first error."""
        first: Optional[BaseException] = None
        for vm in self.get_all_vms():
            try:
                vm.destroy(gracefully=gracefully, timeout=timeout)
            except MigrationTestError as err:
                LOG.error("destroying %s: %s", vm.name, err)
                first = first or err
        if first is not None:
            raise first
