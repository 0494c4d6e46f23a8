"""server/shipping.py: a plain scenario directory travels as its modules, a
tp-qemu-style checkout whole (.git left out), to the hosts' scenario_dirs.
The remote host is a stand-in that runs the commands locally."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.server.shipping import scenario_targets, ship_scenarios


class _LocalHost:
    """put = copy, run = sh: the host's filesystem is a temporary directory."""

    def put(self, local: Path, remote: str) -> None:
        shutil.copy(local, remote)

    def run(self, command: str, timeout: float = 60.0) -> None:
        subprocess.run(["sh", "-c", command], check=True, timeout=timeout)


def _checkout(root: Path) -> Path:
    for rel, text in {"provider/__init__.py": "", "provider/helper.py": "X = 1\n",
                      "multi_host_migration/tests/legacy_t.py": "def run(t, p, e): pass\n",
                      "qemu/deps/tool.c": "int main(void) { return 0; }\n",
                      ".git/HEAD": "ref: refs/heads/master\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_checkout_travels_whole_and_a_plain_directory_as_its_modules(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path / "tp-qemu")
    plain = tmp_path / "mine"
    plain.mkdir()
    (plain / "my_scenario.py").write_text("X = 2\n")
    (plain / "notes.txt").write_text("not a module\n")
    work = tmp_path / "host" / "work"
    work.mkdir(parents=True)
    dirs = [str(plain), str(checkout)]
    assert scenario_targets(dirs, str(work)) == [f"{work}/scenarios", f"{work}/scenarios-1"]
    ship_scenarios(_LocalHost(), dirs, str(work))  # type: ignore[arg-type]
    assert sorted(p.name for p in (work / "scenarios").iterdir()) == ["my_scenario.py"]
    shipped = work / "scenarios-1"
    assert (shipped / "provider" / "helper.py").read_text() == "X = 1\n"
    assert (shipped / "multi_host_migration" / "tests" / "legacy_t.py").is_file()
    assert (shipped / "qemu" / "deps" / "tool.c").is_file()
    assert not (shipped / ".git").exists() and not (work / "scenarios-1.tgz").exists()


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no-such-dir is not a directory"):
        ship_scenarios(_LocalHost(), [str(tmp_path / "no-such-dir")], str(tmp_path))  # type: ignore[arg-type]
