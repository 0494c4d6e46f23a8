"""Stand-ins for unit tests of guest-side code (no QEMU, no console)."""

from __future__ import annotations

from pathlib import Path

from multihost_migration.guest.console import ConsoleSession


class FakeShell(ConsoleSession):
    """Answers commands from a table of (substring -> (status, output))."""

    def __init__(self, answers: dict[str, tuple[int, str]]) -> None:
        super().__init__("vm1", Path("/nonexistent"))
        self.answers = answers
        self.commands: list[str] = []

    def cmd_status_output(self, command: str, timeout: float = 60.0) -> tuple[int, str]:
        self.commands.append(command)
        for key, answer in self.answers.items():
            if key in command:
                return answer
        return 0, ""
