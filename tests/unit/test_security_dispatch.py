"""Security review (issue #15): the controller does not wait forever on a host
whose client thread never returns (a hung host)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, List

import pytest

from multihost_migration.params import Params
from multihost_migration.remote import SshTarget
from multihost_migration.server import dispatch
from multihost_migration.server.dispatch import CfgTestRunner, HostOutcome
from multihost_migration.status import StatusLog


class _HungHostRunner(CfgTestRunner):
    """h2's client thread hangs (an SSH call to a frozen host); h1 passes."""
    release = threading.Event()

    def _run_client(self, host: str, params: Params, localdir: Path, timeout: float,
                    outcome: HostOutcome) -> None:
        if host == "h2":
            self.release.wait(30)
        outcome.status, outcome.reason = "GOOD", "completed successfully"


def test_a_hung_host_is_reported_not_waited_for(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "JOIN_GRACE", 0.5, raising=False)
    targets = {h: SshTarget("127.0.0.1") for h in ("h1", "h2")}
    runner = _HungHostRunner(StatusLog(tmp_path / "status.log"), tmp_path, targets)
    got: List[Any] = []
    start = time.monotonic()
    thread = threading.Thread(target=lambda: got.append(runner.run(
        {"shortname": "t", "test_timeout": "0.5", "sync_port": "20000"})), daemon=True)
    try:
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "the controller waited on the hung host"
    finally:
        _HungHostRunner.release.set()
    assert time.monotonic() - start < 5
    verdict, reason, summary = got[0]
    assert verdict == "ERROR"
    assert summary["host_results"]["h1"]["status"] == "GOOD"
    assert summary["host_results"]["h2"]["status"] == "ERROR"
    assert "h2" in reason and "not waited for" in reason
