"""Tests of multihost_migration.report.cli (`mhm-report`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from multihost_migration.report.cli import main
from tests.unit.test_report_model import standard_results


def test_writes_both_files_and_prints_paths(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = standard_results(tmp_path / "r")
    assert main([str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [str(root / "junit.xml"), str(root / "report.html")]
    assert all(Path(p).stat().st_size > 0 for p in out)


def test_missing_dir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err == f"mhm-report: {tmp_path / 'nope'}: no such results directory\n"


def test_bad_results_json_names_the_file(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "results.json").write_text('{"tests": [')
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mhm-report: {tmp_path / 'results.json'}: invalid JSON")
    assert err.count("\n") == 1
    assert not (tmp_path / "junit.xml").exists()


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "mhm-report"
    proc = subprocess.run([str(script), str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"mhm-report: {tmp_path / 'results.json'}: missing "
                                   "(not an autotest-remote results directory, or the "
                                   "job did not finish)")
