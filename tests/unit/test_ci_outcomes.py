"""What a CI job sees: verdict classes, JUnit for failures before any test,
exit statuses and results directories that never collide.

autotest-remote runs for real here, against loopback addresses on a port
where nothing listens (port 1): connections are refused at once, no traffic
leaves the machine.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from multihost_migration.errors import (ClientInstallError, ConfigError, GuestCheckError,
                                        MigrationError, RemoteError, StorageError)
from multihost_migration.report.statuslog import verdict_records
from multihost_migration.server import control_env
from multihost_migration.server.cli import new_results_dir
from multihost_migration import verdicts
from multihost_migration.verdicts import exit_status, status_of
from tests.unit.test_report_junit import JUNIT_XSD

ROOT = Path(__file__).resolve().parents[2]
DEAD = ["127.0.0.1", "127.0.0.2"]


def autotest_remote(tmp_path: Path, *extra: str, machines: list[str] = DEAD,
                    control: Path = ROOT / "control.srv", results: str = "r",
                    cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "known_hosts").touch()
    argv = [sys.executable, "-m", "multihost_migration.server.cli",
            "-m", ",".join(machines), "--ssh-port", "1", "--remote-python", "python3",
            "--known-hosts", str(tmp_path / "known_hosts")]
    if results:
        argv += ["-r", str(tmp_path / results)]
    return subprocess.run(argv + [str(control), *extra], capture_output=True, text=True,
                          timeout=120, cwd=cwd or tmp_path, stdin=subprocess.DEVNULL)


def junit_cases(results: Path) -> list[tuple[str, str]]:
    """(name, outcome) per testcase; the file validated against the schema first."""
    xmlschema.XMLSchema(JUNIT_XSD).validate(str(results / "junit.xml"))
    out = []
    for case in ET.parse(results / "junit.xml").getroot().iter("testcase"):
        kind = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        out.append((case.get("name", ""), kind[0] if kind else "passed"))
    return out


def assert_junit_matches_status_log(results: Path) -> None:
    root = ET.parse(results / "junit.xml").getroot()
    statuses = [s for _, s in verdict_records((results / "status.log").read_text())]
    assert int(root.get("tests", -1)) == len(statuses)
    assert int(root.get("failures", -1)) == statuses.count("FAIL")
    assert int(root.get("errors", -1)) == sum(s in ("ERROR", "ABORT") for s in statuses)
    assert int(root.get("skipped", -1)) == statuses.count("TEST_NA")


# -- the rule -----------------------------------------------------------------

@pytest.mark.parametrize("err, status", [
    (ConfigError("mem='abc' is not an integer"), "ERROR"),
    (RemoteError("h2:22: cannot connect"), "ERROR"),
    (StorageError("image missing"), "ERROR"),
    (ClientInstallError("h1", "venv", "no python"), "ERROR"),
    (MigrationError("migration failed"), "FAIL"),
    (GuestCheckError("2 bad pages"), "FAIL"),
    (verdicts.TestFail("check"), "FAIL"),
    (verdicts.TestNAError("no /dev/vhost-net"), "TEST_NA"),
    (verdicts.TestError("setup"), "ERROR"),
    (verdicts.TestWarn("look"), "WARN"),
    (KeyError("suite bug"), "ERROR"),
    (KeyboardInterrupt(), "ABORT"),
])
def test_one_rule_for_verdict_classes(err: BaseException, status: str) -> None:
    assert status_of(err) == status


def test_control_files_raise_the_suites_own_verdicts() -> None:
    assert control_env.TestFail is verdicts.TestFail
    assert control_env.TestNAError is verdicts.TestNAError
    assert status_of(control_env.TestNAError("x")) == "TEST_NA"


@pytest.mark.parametrize("verdict, code", [("GOOD", 0), ("WARN", 0), ("TEST_NA", 0),
                                           ("FAIL", 1), ("ERROR", 2), ("ABORT", 130)])
def test_worst_verdict_decides_the_exit_status(verdict: str, code: int) -> None:
    assert exit_status(verdict) == code


# -- failures before any test ------------------------------------------------------

def test_unreachable_hosts_are_one_error_testcase_each(tmp_path: Path) -> None:
    proc = autotest_remote(tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    results = tmp_path / "r"
    cases = junit_cases(results)
    assert sorted(cases) == [(f"{h}: preflight", "error") for h in DEAD], cases
    xml = (results / "junit.xml").read_text()
    assert "127.0.0.2:1: cannot connect" in xml and "preflight.txt" not in xml
    assert "logs: " + str(results / "multihost_migration.127.0.0.1_127.0.0.2") in xml
    assert_junit_matches_status_log(results)
    assert "Traceback" not in proc.stderr


def test_install_failures_of_every_host_are_reported(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "multihost_migration.server.cli", "-m", ",".join(DEAD),
            "--ssh-port", "1", "-r", str(tmp_path / "r"), str(ROOT / "control.srv")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert sorted(junit_cases(tmp_path / "r")) == [
        (f"{h}: client install", "error") for h in DEAD]
    assert_junit_matches_status_log(tmp_path / "r")


def test_bad_param_is_an_error_not_a_failure(tmp_path: Path) -> None:
    proc = autotest_remote(tmp_path, "mem=abc")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    cases = dict(junit_cases(tmp_path / "r"))
    assert cases.get("params: preflight") == "error", cases
    assert "mem='abc' is not an integer" in (tmp_path / "r" / "junit.xml").read_text()
    assert_junit_matches_status_log(tmp_path / "r")


def test_machine_without_a_partner_is_an_error_testcase(tmp_path: Path) -> None:
    proc = autotest_remote(tmp_path, machines=DEAD + ["127.0.0.3"])
    assert proc.returncode == 2
    cases = dict(junit_cases(tmp_path / "r"))
    assert cases.get("127.0.0.3: pairing") == "error", cases
    assert len(cases) == 3
    assert_junit_matches_status_log(tmp_path / "r")


def test_broken_control_file_is_an_error_testcase(tmp_path: Path) -> None:
    control = tmp_path / "broken.srv"
    control.write_text("job.run_tset('multihost_migration')\n")
    proc = autotest_remote(tmp_path, control=control)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert junit_cases(tmp_path / "r") == [("control file", "error")]
    assert "run_tset" in (tmp_path / "r" / "junit.xml").read_text()
    assert_junit_matches_status_log(tmp_path / "r")


def test_too_few_machines_is_an_error_testcase(tmp_path: Path) -> None:
    proc = autotest_remote(tmp_path, machines=["127.0.0.1"])
    assert proc.returncode == 2
    assert junit_cases(tmp_path / "r") == [("control file", "error")]
    assert "needs at least 2 machines" in (tmp_path / "r" / "status.log").read_text()


def test_a_run_of_only_test_na_passes_and_says_nothing_ran(tmp_path: Path) -> None:
    control = tmp_path / "na.srv"
    control.write_text("job.record_setup_failure('vhost', '', machines, "
                       "'/dev/vhost-net is absent', status='TEST_NA')\n")
    proc = autotest_remote(tmp_path, control=control)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing ran" in proc.stdout
    assert junit_cases(tmp_path / "r") == [("vhost", "skipped")]
    assert_junit_matches_status_log(tmp_path / "r")


def test_missing_known_hosts_file_is_refused_naming_it(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "multihost_migration.server.cli", "-m", ",".join(DEAD),
            "--known-hosts", str(tmp_path / "nope"), "-r", str(tmp_path / "r"),
            str(ROOT / "control.srv")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"--known-hosts {tmp_path / 'nope'}: no such file" in proc.stderr


# -- results directories ---------------------------------------------------------

def test_default_results_directories_never_collide(tmp_path: Path) -> None:
    now = datetime.datetime(2026, 12, 4, 21, 0, 0)
    first = new_results_dir(tmp_path, now)
    second = new_results_dir(tmp_path, now)
    assert first != second and first.is_dir() and second.is_dir()
    assert (tmp_path / "latest").resolve() == second.resolve()


def test_two_runs_in_the_same_second_each_write_their_own(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "multihost_migration.server.cli", "-m", ",".join(DEAD),
            "--ssh-port", "1", "--remote-python", "python3", str(ROOT / "control.srv")]
    procs = [subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, out + err
        assert "exists and is not empty" not in err
    dirs = [d for d in (tmp_path / "results").iterdir() if not d.is_symlink()]
    assert len(dirs) == 3, dirs
    for directory in dirs:
        assert (directory / "junit.xml").is_file() and (directory / "status.log").is_file()
    latest = os.readlink(tmp_path / "results" / "latest")
    assert latest in {d.name for d in dirs}
