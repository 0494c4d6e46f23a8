"""Fixtures for tests that need the two-host lab (root, real namespaces)."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from multihost_migration.lab import lab
from multihost_migration.lab.config import LabConfig
from multihost_migration.lab.inventory import Inventory
from multihost_migration.remote import RemoteHost


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_config() -> LabConfig:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces); run them as root")
    # MHM_LAB_HOSTS: run against a bigger lab left up by a developer (who
    # runs several suites at once on different pairs, see MHM_TEST_HOSTS).
    return LabConfig(hosts=int(os.environ.get("MHM_LAB_HOSTS", "2")))


@pytest.fixture(scope="session")
def lab_inventory(lab_config: LabConfig) -> Iterator[Inventory]:
    """The lab, up for the whole session; taken down at its end unless it
    was already up before (a developer's lab stays as it was)."""
    was_up = not lab.status_problems(lab.load_inventory(lab_config.state_dir)) \
        if lab.inventory_path(lab_config.state_dir).exists() else False
    lab.up(lab_config)
    try:
        yield lab.load_inventory(lab_config.state_dir)
    finally:
        if not was_up:
            lab.down(lab_config)


@pytest.fixture
def inventory(lab_inventory: Inventory, lab_config: LabConfig) -> Inventory:
    """The lab's current inventory (a test may have rebuilt the lab)."""
    lab.up(lab_config)
    return lab.load_inventory(lab_config.state_dir)


def connect(inv: Inventory, host: str) -> RemoteHost:
    remote = RemoteHost(lab.ssh_target(inv, host), lab.ctl_socket_factory(inv))
    remote.connect()
    return remote
