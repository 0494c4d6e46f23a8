"""Security review (issue #15): each job gets a fresh private work directory
on the host (mktemp -d, mode 0700), never one that already exists under a
predictable name."""

from __future__ import annotations

import stat
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, List, Optional

import pytest

from multihost_migration.errors import RemoteError
from multihost_migration.params import Params
from multihost_migration.remote import CommandResult, RemoteHost, SshTarget
from multihost_migration.server import dispatch
from multihost_migration.server.dispatch import CfgTestRunner
from multihost_migration.server.install import make_workdir
from multihost_migration.status import StatusLog


class LocalShellHost(RemoteHost):
    """A 'host' that is this machine's shell: the real mktemp, the real modes."""

    def __init__(self) -> None:
        super().__init__(SshTarget("localhost"))

    def run(self, command: str, timeout: float = 60.0, check: bool = True,
            on_line: Optional[Callable[[str], None]] = None, get_pty: bool = False,
            cancel: Optional[threading.Event] = None) -> CommandResult:
        proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                              timeout=timeout)
        return CommandResult(command, proc.returncode, proc.stdout, proc.stderr, 0.0)


def test_workdir_is_fresh_and_private(tmp_path: Path) -> None:
    host = LocalShellHost()
    planted = tmp_path / "mhm-job1-h1"
    planted.mkdir(mode=0o777)  # someone else's directory under the old fixed name
    first = make_workdir(host, "mhm-job1-h1", base=str(tmp_path))
    second = make_workdir(host, "mhm-job1-h1", base=str(tmp_path))
    assert first != second and str(planted) not in (first, second)
    for path in (first, second):
        assert Path(path).parent == tmp_path and Path(path).name.startswith("mhm-job1-h1.")
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o700
        assert list(Path(path).iterdir()) == []


class _Answers(RemoteHost):
    def __init__(self, stdout: str) -> None:
        super().__init__(SshTarget("h1"))
        self.stdout = stdout

    def run(self, command: str, timeout: float = 60.0, check: bool = True,
            on_line: Optional[Callable[[str], None]] = None, get_pty: bool = False,
            cancel: Optional[threading.Event] = None) -> CommandResult:
        return CommandResult(command, 0, self.stdout, "", 0.0)


@pytest.mark.parametrize("stdout", ["", "/etc\n", "/tmp/other.abc\n", "relative\n",
                                    "/tmp/mhm-j-h1.x/../../etc\n"])
def test_an_odd_answer_from_the_host_is_refused(stdout: str) -> None:
    with pytest.raises(RemoteError, match="mktemp"):
        make_workdir(_Answers(stdout), "mhm-j-h1")


@pytest.mark.parametrize("name, kept", [("../x", "_x"), ("a/b c;d", "a_b_c_d"), ("..", "mhm")])
def test_a_name_is_one_plain_component(tmp_path: Path, name: str, kept: str) -> None:
    path = make_workdir(LocalShellHost(), name, base=str(tmp_path))
    assert Path(path).parent == tmp_path and Path(path).name.startswith(kept + ".")


class _Recorder(RemoteHost):
    """A host that answers every command with success and records it."""
    commands: List[str] = []

    def __init__(self, target: SshTarget, *args: Any) -> None:
        super().__init__(target)

    def __enter__(self) -> "_Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, command: str, timeout: float = 60.0, check: bool = True,
            on_line: Optional[Callable[[str], None]] = None, get_pty: bool = False,
            cancel: Optional[threading.Event] = None, outbox: Any = None) -> CommandResult:
        self.commands.append(command)
        out = "/tmp/mhm-j-h1.Ab3dEf9h\n" if "mktemp -d" in command else ""
        return CommandResult(command, 0, out, "", 0.0)

    def put(self, local: Path, remote: str, timeout: float = 300.0) -> None:
        self.commands.append(f"put {remote}")

    def get_tree(self, remote: str, local: Path, timeout: float = 600.0) -> int:
        self.commands.append(f"get_tree {remote}")
        return 0


def test_the_controller_runs_the_job_in_a_fresh_workdir(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _Recorder.commands = []
    monkeypatch.setattr(dispatch, "RemoteHost", _Recorder)
    runner = CfgTestRunner(StatusLog(tmp_path / "status.log"), tmp_path,
                           {"h1": SshTarget("127.0.0.1"), "h2": SshTarget("127.0.0.1")})
    runner._run_client("h1", Params({"job_id": "j"}), tmp_path / "h1", 10.0,
                       dispatch.HostOutcome("h1"))
    commands = _Recorder.commands
    assert "flock -n" in commands[0]     # first: what earlier jobs left (hostwatch sweep)
    assert "mktemp -d" in commands[1]
    assert not any("mkdir -p -m 0700" in c for c in commands)
    assert "put /tmp/mhm-j-h1.Ab3dEf9h/params.json" in commands
    assert any(c.startswith("cd /tmp/mhm-j-h1.Ab3dEf9h && ") for c in commands)
    assert commands[-1] == "rm -rf /tmp/mhm-j-h1.Ab3dEf9h"
