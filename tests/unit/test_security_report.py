"""Security review (issue #15): mhm-report reads nothing outside the results
directory, and secrets in control arguments or params never reach
report.html or results.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from multihost_migration.report.cli import main
from multihost_migration.report.model import load_results, redact_args

SECRETS = ("hunter2", "s3cr3t", "letmein")


def _results(root: Path, tests: list[dict[str, Any]], args: list[str]) -> Path:
    root.mkdir(parents=True)
    (root / "results.json").write_text(json.dumps(
        {"job": {"machines": ["h1", "h2"], "started": 1.0, "finished": 2.0,
                 "control": "control.srv", "args": args},
         "tests": tests}))
    return root


def _test(name: str, group: str, logdir: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "group": group, "hosts": ["h1", "h2"], "status": "GOOD",
            "reason": "", "duration": 1.0, "logdir": logdir, "host_results": {},
            "migrations": [], **extra}


def test_report_reads_no_log_directory_outside_the_results(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "h1").mkdir(parents=True)
    (outside / "h1" / "private-file.log").write_text("not yours")
    root = tmp_path / "r"
    _results(root, [
        _test("absolute", "g", str(outside)),               # absolute path out
        _test("relative", "g", "../outside"),               # relative path out
        _test("..", "..", ""),                              # group/name out: r/../..
        _test("outside", "..", ""),                         # r/../outside
        _test("linked", "g", "g/linked"),                   # a symlink out
        _test("inside", "g", str(root / "g" / "inside")),   # an ordinary run
    ], [])
    (root / "g" / "inside" / "h1").mkdir(parents=True)
    (root / "g" / "inside" / "h1" / "client.DEBUG").write_text("ok")
    (root / "g" / "linked").symlink_to(outside, target_is_directory=True)
    results = load_results(root)
    logdirs = {t.name: t.logdir for t in results.tests}
    assert logdirs == {"absolute": None, "relative": None, "..": None, "outside": None,
                       "linked": None, "inside": root.resolve() / "g" / "inside"}
    assert main([str(root)]) == 0
    html = (root / "report.html").read_text()
    assert "private-file.log" not in html
    assert "client.DEBUG" in html


def test_results_json_symlinked_out_is_not_read(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = _results(tmp_path / "elsewhere", [_test("t", "g", "")], [])
    root = tmp_path / "r"
    root.mkdir()
    (root / "results.json").symlink_to(elsewhere / "results.json")
    assert main([str(root)]) == 2
    assert "outside the results directory" in capsys.readouterr().err


def test_secrets_in_args_and_params_never_reach_the_report(tmp_path: Path) -> None:
    root = _results(tmp_path / "r", [
        _test("t", "g", "", params={"ssh_pass": "letmein", "mem": "512",
                                    "sync_secret": "s3cr3t"})],
        ["accel=tcg", "password=hunter2", "only integrity.ping_pong"])
    assert main([str(root)]) == 0
    html = (root / "report.html").read_text()
    for secret in SECRETS:
        assert secret not in html
    assert "password=&lt;redacted&gt;" in html or "password=<redacted>" in html
    assert "accel=tcg" in html and "only integrity.ping_pong" in html


def test_redact_args_keeps_the_rest() -> None:
    assert redact_args(["accel=tcg", "Password=x", "ssh_pass=y", "only a.b", "secret",
                        "x=1=2", "api_token=z"]) == (
        "accel=tcg", "Password=<redacted>", "ssh_pass=<redacted>", "only a.b", "secret",
        "x=1=2", "api_token=<redacted>")


def test_autotest_remote_writes_no_secret_into_results(tmp_path: Path) -> None:
    """The real command line: a control file that runs nothing."""
    control = tmp_path / "noop.srv"
    control.write_text("pass\n")
    (tmp_path / "known_hosts").touch()
    argv = [sys.executable, "-m", "multihost_migration.server.cli",
            "-m", "127.0.0.1,127.0.0.2", "--ssh-port", "1", "--remote-python", "python3",
            "--known-hosts", str(tmp_path / "known_hosts"), "-r", str(tmp_path / "r"),
            str(control), "accel=tcg", "password=hunter2", "sync_secret=s3cr3t"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          stdin=subprocess.DEVNULL)
    assert (tmp_path / "r" / "results.json").exists(), proc.stdout + proc.stderr
    for name in ("results.json", "report.html", "junit.xml", "status.log", "keyval"):
        path = tmp_path / "r" / name
        if path.exists():
            text = path.read_text()
            for secret in SECRETS:
                assert secret not in text, (name, secret)
    args = json.loads((tmp_path / "r" / "results.json").read_text())["job"]["args"]
    assert args == ["accel=tcg", "password=<redacted>", "sync_secret=<redacted>"]
