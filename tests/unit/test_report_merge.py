"""report/merge.py and `mhm-report merge`: one result directory from shards."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from multihost_migration.report.cli import main


def shard(root: Path, shard: str, identity: str, group: str,
          tests: list[tuple[str, str]]) -> Path:
    """A results directory as one shard writes it (logdirs absolute)."""
    root.mkdir(parents=True)
    entries: list[dict[str, Any]] = []
    status = ["START\t----\t----\ttimestamp=1\tlocaltime=x\t\n"]
    for name, verdict in tests:
        logdir = root / group / name
        (logdir / "h1" / "debug").mkdir(parents=True)
        (logdir / "h1" / "debug" / "client.DEBUG").write_text(f"{name} log\n")
        entries.append({"name": name, "group": group, "hosts": group.split(".")[1].split("_"),
                        "status": verdict, "reason": "" if verdict == "GOOD" else "broken",
                        "duration": 1.0, "logdir": str(logdir), "host_results": {},
                        "migrations": [{"vm": "vm1", "stats": {"vm1": {"status": "completed",
                                                                       "total_time_ms": 900}}}]})
        status.append(f"\t{verdict}\t{name}\t{name}\ttimestamp=1\tlocaltime=x\t\n")
    status.append("END GOOD\t----\t----\ttimestamp=2\tlocaltime=x\t\n")
    (root / "status.log").write_text("".join(status))
    (root / "results.json").write_text(json.dumps({
        "job": {"machines": group.split(".")[1].split("_"), "started": 10.0, "finished": 20.0,
                "control": "control.srv", "args": [], "identity": identity, "shard": shard},
        "tests": entries}))
    return root


def test_merge_two_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = shard(tmp_path / "a", "1/2", "ID", "multihost_migration.h1_h2",
              [("t1", "GOOD"), ("t2", "FAIL")])
    b = shard(tmp_path / "b", "2/2", "ID", "multihost_migration.h3_h4", [("t1", "GOOD")])
    out = tmp_path / "out"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / n) for n in ("results.json", "junit.xml", "report.html")]
    data = json.loads((out / "results.json").read_text())
    assert data["job"]["machines"] == ["h1", "h2", "h3", "h4"]
    assert data["job"]["identity"] == "ID"
    assert [(t["group"], t["name"], t["status"]) for t in data["tests"]] == [
        ("multihost_migration.h1_h2", "t1", "GOOD"), ("multihost_migration.h1_h2", "t2", "FAIL"),
        ("multihost_migration.h3_h4", "t1", "GOOD")]
    assert sum(len(t["migrations"]) for t in data["tests"]) == 3
    first = data["tests"][0]["logdir"]
    assert first == "shard-1-of-2/multihost_migration.h1_h2/t1"
    assert (out / first / "h1" / "debug" / "client.DEBUG").is_file()
    suites = ET.parse(out / "junit.xml").getroot()
    assert (suites.get("tests"), suites.get("failures")) == ("3", "1")
    html = (out / "report.html").read_text()
    assert "t2" in html and "h3_h4" in html


def test_merge_refuses_other_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = shard(tmp_path / "a", "1/2", "ID", "multihost_migration.h1_h2", [("t1", "GOOD")])
    b = shard(tmp_path / "b", "2/2", "OTHER", "multihost_migration.h3_h4", [("t1", "GOOD")])
    assert main(["merge", str(a), str(b), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mhm-report merge: {b}: another job") and "refusing" in err
    assert not (tmp_path / "out").exists()


def test_merge_refuses_same_shard_twice_and_no_identity(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    a = shard(tmp_path / "a", "1/2", "ID", "multihost_migration.h1_h2", [("t1", "GOOD")])
    b = shard(tmp_path / "b", "1/2", "ID", "multihost_migration.h3_h4", [("t1", "GOOD")])
    assert main(["merge", str(a), str(b), "-o", str(tmp_path / "o1")]) == 2
    assert "shard-1-of-2 given more than once" in capsys.readouterr().err
    c = shard(tmp_path / "c", "2/2", "", "multihost_migration.h3_h4", [("t1", "GOOD")])
    assert main(["merge", str(a), str(c), "-o", str(tmp_path / "o2")]) == 2
    assert "no job identity" in capsys.readouterr().err


def test_merge_refuses_non_empty_output(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    a = shard(tmp_path / "a", "1/1", "ID", "multihost_migration.h1_h2", [("t1", "GOOD")])
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("")
    assert main(["merge", str(a), "-o", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["merge", str(a), "-o", str(out), "--overwrite"]) == 0
