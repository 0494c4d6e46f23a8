"""Security review (issue #15): the SSH password need not be on the command
line (visible in ps), and no repr shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.remote import SshTarget
from multihost_migration.server import cli


def _password(tmp_path: Path, *extra: str) -> Optional[object]:
    control = tmp_path / "control.srv"
    control.write_text("pass\n")
    args = cli._parser().parse_args(["-m", "h1,h2", "-r", str(tmp_path / "r"), *extra,
                                     str(control)])
    password: Optional[object] = cli.options_from(args).ssh_defaults["password"]
    return password


def test_ssh_password_from_the_environment(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MHM_SSH_PASS", "from-env")
    assert _password(tmp_path) == "from-env"
    assert _password(tmp_path, "--ssh-pass", "from-argv") == "from-argv"  # explicit wins


def test_ssh_password_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MHM_SSH_PASS", "from-env")
    secret = tmp_path / "pass"
    secret.write_text("from file with spaces\nsecond line ignored\n")
    secret.chmod(0o600)
    assert _password(tmp_path, "--ssh-pass-file", str(secret)) == "from file with spaces"


def test_ssh_password_sources_are_checked(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MHM_SSH_PASS", raising=False)
    assert _password(tmp_path) is None
    with pytest.raises(ConfigError, match="--ssh-pass-file .*nope"):
        _password(tmp_path, "--ssh-pass-file", str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        _password(tmp_path, "--ssh-pass-file", str(empty))
    with pytest.raises(ConfigError, match="not both"):
        _password(tmp_path, "--ssh-pass", "x", "--ssh-pass-file", str(empty))


def test_ssh_target_repr_hides_the_password() -> None:
    target = SshTarget("h1", password="hunter2")
    assert "hunter2" not in repr(target) and "hunter2" not in str(target)
    assert target.password == "hunter2"
    assert "hunter2" not in repr(SshTarget.parse("root@h2:22", password="hunter2"))
