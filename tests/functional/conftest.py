"""Fixtures shared by the functional tests (real QEMU on this host)."""

from __future__ import annotations

import os
from typing import Any

import pytest


@pytest.fixture(scope="module")
def guest_params(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Params booting the tiny guest (built into a temporary directory)."""
    from multihost_migration.lab.guest import build_guest
    image = build_guest(tmp_path_factory.mktemp("guest"))
    return {"kernel": str(image.kernel), "initrd": str(image.initrd),
            "kernel_params": image.kernel_cmdline, "image_path": str(image.disk),
            "accel": os.environ.get("MHM_ACCEL", "tcg"), "mem": "256",
            "username": image.username, "password": image.password,
            "shell_prompt": image.shell_prompt_regex}
