"""The client job's verdict and exit status, run as the server runs it (a
subprocess): GOOD, WARN (passed with warnings), FAIL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from multihost_migration.migration import MultihostMigration
from multihost_migration.status import parse
from multihost_migration.verdicts import exit_status

SCENARIO = '''
from multihost_migration.verdicts import TestFail


def run(test, params, env):
    for message in params.objects("warnings_to_give"):
        test.warnings.append(message.replace("_", " "))
    if params.get("fail_with"):
        raise TestFail(params["fail_with"])
'''


def run_client(tmp_path: Path, **params: Any) -> tuple[int, list[Any]]:
    (tmp_path / "verdict_probe.py").write_text(SCENARIO)
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps({"shortname": "probe", "type": "verdict_probe",
                                       "hostid": "h1", "scenario_dirs": str(tmp_path),
                                       **params}))
    proc = subprocess.run([sys.executable, "-m", "multihost_migration.client",
                           "--params", str(params_file), "--resultsdir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return proc.returncode, parse((tmp_path / "r" / "status.log").read_text())


def test_a_pass_is_good(tmp_path: Path) -> None:
    rc, entries = run_client(tmp_path)
    assert rc == 0 and entries[-1].status == "END GOOD"


def test_a_pass_with_warnings_is_warn_with_them_as_reason(tmp_path: Path) -> None:
    rc, entries = run_client(tmp_path, warnings_to_give="known_defect_seen clock_unchecked")
    assert rc == 0
    assert entries[-1].status == "END WARN"
    warn = [e for e in entries if e.status == "WARN"]
    assert warn and warn[0].reason == "known defect seen; clock unchecked"


def test_a_failure_outranks_warnings(tmp_path: Path) -> None:
    rc, entries = run_client(tmp_path, warnings_to_give="x", fail_with="memory differs")
    assert rc == 1
    assert entries[-1].status == "END FAIL"
    assert any(e.reason == "memory differs" for e in entries if e.status == "FAIL")


class FakeTest:
    def __init__(self) -> None:
        self.warnings: list[str] = []


def test_multihost_migration_warn_records_on_the_test(caplog: pytest.LogCaptureFixture) -> None:
    mig = object.__new__(MultihostMigration)   # warn() needs only self.test
    mig.test = FakeTest()
    mig.warn("vm1: KNOWN DEFECT seen")
    assert mig.test.warnings == ["vm1: KNOWN DEFECT seen"]
    assert "WARN: vm1: KNOWN DEFECT seen" in caplog.text
    mig.test = object()   # a test object of another framework: logged only
    mig.warn("again")


@pytest.mark.parametrize("verdict,code", [("GOOD", 0), ("WARN", 0), ("FAIL", 1),
                                          ("ERROR", 2), ("TEST_NA", 0), ("ABORT", 130),
                                          ("NOSUCH", 2)])
def test_exit_status(verdict: str, code: int) -> None:
    assert exit_status(verdict) == code


SLOW_CLEANUP = '''
import time


class SlowVM:
    """Stands in for a VM whose shutdown takes a while."""
    name = "vm1"

    def destroy(self, gracefully=True, timeout=30.0):
        time.sleep(1.5)


def run(test, params, env):
    env.register_vm("vm1", SlowVM())
    print("SCENARIO-RUNNING", flush=True)
    time.sleep(60)
'''


def test_a_second_signal_during_cleanup_still_ends_in_abort(tmp_path: Path) -> None:
    """The controller's Ctrl-C is followed by a hang-up: the client must still
    clean up and write its ABORT verdict, with no traceback."""
    import signal
    import time
    (tmp_path / "slow_cleanup.py").write_text(SLOW_CLEANUP)
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps({"shortname": "probe", "type": "slow_cleanup",
                                       "hostid": "h1", "scenario_dirs": str(tmp_path)}))
    proc = subprocess.Popen([sys.executable, "-m", "multihost_migration.client",
                             "--params", str(params_file), "--resultsdir", str(tmp_path / "r")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "SCENARIO-RUNNING" in line or not line:
                break
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)                     # inside SlowVM.destroy now
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    entries = parse((tmp_path / "r" / "status.log").read_text())
    abort = [e for e in entries if e.status == "ABORT"]
    assert abort and "interrupted: received SIGINT" in abort[0].reason, entries
