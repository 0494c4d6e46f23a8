"""Preflight parses what a command printed, not a login shell's stderr noise."""

from __future__ import annotations

from typing import Any

from multihost_migration.remote import CommandResult
from multihost_migration.server.preflight import Preflight

NOISE = ("rm: cannot remove '/root/.pyenv/shims/tmp.A5DfYuglnY': No such file or directory\n"
         "pyenv: cannot rehash: /root/.pyenv/shims isn't writable\n")


class NoisyRemote:
    def __init__(self, stdout: str, status: int = 0) -> None:
        self.stdout, self.status = stdout, status

    def run(self, command: str, **kwargs: Any) -> CommandResult:
        return CommandResult(command=command, exit_status=self.status, stdout=self.stdout,
                             stderr=NOISE, duration=0.01)


def preflight(remote: NoisyRemote) -> Preflight:
    check = Preflight({}, {"max_clock_skew": "1000000000000"}, "python3", {})
    check._remotes["h1"] = remote  # type: ignore[assignment]
    return check


def test_clock_and_memory_are_read_despite_stderr_noise() -> None:
    check = preflight(NoisyRemote("1795660986.898204852\n"))
    check._clock("h1")
    assert check.checks[0].ok, check.checks[0]
    check = preflight(NoisyRemote("16000000\n"))
    assert check._run("h1", "awk ...") == (0, "16000000")


def test_a_failing_command_keeps_stderr_as_evidence() -> None:
    code, out = preflight(NoisyRemote("", status=1))._run("h1", "false")
    assert code == 1 and "pyenv: cannot rehash" in out
