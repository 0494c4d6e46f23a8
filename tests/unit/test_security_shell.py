"""Security review (issue #15): values from params and options that reach a
shell (exec transport host/port, diskio_device, --remote-python) cannot
inject commands."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.qemu.transport import exec_connect_command, exec_listen_command
from multihost_migration.scenarios.migration_with_disk_io import verify_command, writer_command
from multihost_migration.server import cli

HOSTILE = ["10.0.0.2; touch /tmp/mhm-pwned", "h2 -v", "h2,fork", "$(id)", "`id`",
           "h2\nid", "", "-h"]


@pytest.mark.parametrize("host", HOSTILE)
def test_exec_transport_refuses_a_host_that_is_no_address(host: str) -> None:
    for build in (exec_connect_command, exec_listen_command):
        with pytest.raises(ConfigError, match="exec migration host"):
            build(host, 5555)


@pytest.mark.parametrize("host", ["198.18.0.12", "h2", "host-2.lab.example", "::1",
                                  "fe80::1%eth0"])
def test_exec_transport_commands_are_single_words(host: str) -> None:
    assert shlex.split(exec_connect_command(host, 5555))[:3] == ["socat", "-u", "STDIN"]
    assert len(shlex.split(exec_connect_command(host, 5555))) == 4
    assert len(shlex.split(exec_listen_command(host, 5555))) == 4


def test_exec_transport_port_must_be_a_port() -> None:
    with pytest.raises((ConfigError, ValueError)):
        exec_connect_command("h2", "5555; id")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        exec_connect_command("h2", 70000)


def test_diskio_device_with_shell_characters_does_not_inject(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    device = f"{tmp_path}/disk; touch {pwned}"
    state = str(tmp_path / "state")
    # the verify line, run for real by a POSIX shell, as the guest would
    subprocess.run(["sh", "-c", verify_command(device, 1, 0, 4, 4, state=state)],
                   cwd=tmp_path, capture_output=True, timeout=30)
    assert not pwned.exists()
    words = shlex.split(writer_command(device, 1, 0, 4, state=state))
    assert f"of={device}" in words


def _remote_python(tmp_path: Path, value: str) -> object:
    control = tmp_path / "control.srv"
    control.write_text("pass\n")
    args = cli._parser().parse_args(["-m", "h1,h2", "-r", str(tmp_path / "r"),
                                     "--remote-python", value, str(control)])
    python: object = cli.options_from(args).remote_python
    return python


@pytest.mark.parametrize("value", ["python3; touch /tmp/mhm-pwned", "python3 -c x",
                                   "$(id)", "py|sh", ""])
def test_remote_python_with_shell_characters_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="--remote-python"):
        _remote_python(tmp_path, value)


def test_remote_python_path_is_accepted(tmp_path: Path) -> None:
    assert _remote_python(tmp_path, "/opt/venv-1.0/bin/python3.11") == \
        "/opt/venv-1.0/bin/python3.11"
