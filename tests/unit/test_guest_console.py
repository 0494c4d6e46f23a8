"""ConsoleSession against a fake getty/shell on a unix socket (real socat +
aexpect processes, no QEMU)."""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path
from typing import Iterator, TextIO

import pytest

from multihost_migration.errors import LoginError, ShellCommandError
from multihost_migration.guest.console import ConsoleSession, tolerant


PROMPT = "mhm-guest# \x1b[6n"  # busybox ash asks for the cursor position


class FakeSerial(threading.Thread):
    """getty + login + a shell that knows `echo $?`, `false` and echo."""

    def __init__(self, path: Path, logged_in: bool = False, password: str = "mhm") -> None:
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.logged_in = logged_in
        self.password = password
        self.lines: list[str] = []

    def run(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        # Separate reader and writer: a write on one "rw" text stream would
        # drop lines already read ahead (two commands sent in one chunk).
        with conn, conn.makefile("r", newline="") as reader, \
                conn.makefile("w", newline="") as writer:
            self._serve(reader, writer)

    def _serve(self, stream: TextIO, writer: TextIO) -> None:
        rc = 0
        state = "shell" if self.logged_in else "login"
        for raw in stream:
            line = raw.strip("\r\n")
            self.lines.append(line)
            if state == "login":
                out, state = ("Password: ", "password") if line == "root" else ("login: ", "login")
            elif state == "password":
                ok = line == self.password
                out = PROMPT if ok else "Login incorrect\r\nlogin: "
                state = "shell" if ok else "login"
            elif line == "echo $?":
                out = f"{rc}\r\n{PROMPT}"
            elif line == "false":
                rc, out = 1, PROMPT
            elif line.startswith("echo "):
                rc, out = 0, line[5:].replace("$?", str(rc)) + "\r\n" + PROMPT
            else:
                rc, out = 0, PROMPT
            writer.write(out)
            writer.flush()

    def stop(self) -> None:
        self.server.close()


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "serial.sock"


@pytest.fixture
def session(sock: Path) -> Iterator[ConsoleSession]:
    console = ConsoleSession("fake", sock)
    yield console
    console.close()


def test_tolerant_prompt_regex() -> None:
    pattern = tolerant(r"mhm-guest# $")
    assert re.search(pattern, "mhm-guest# ")
    assert re.search(pattern, "mhm-guest# \x1b[6n")
    assert not re.search(pattern, "mhm-guest# ls")
    assert tolerant("no-anchor") == "no-anchor"


def test_login_and_commands(sock: Path, session: ConsoleSession) -> None:
    fake = FakeSerial(sock)
    fake.start()
    try:
        session.open()
        session.login(timeout=20)
        assert "root" in fake.lines and "mhm" in fake.lines
        assert session.cmd("echo hi").strip() == "hi"
        assert session.cmd_status_output("false")[0] == 1
        with pytest.raises(ShellCommandError) as info:
            session.cmd("false")
        assert info.value.status == 1
    finally:
        session.close()
        fake.stop()
    assert not session.is_open
    session.close()  # idempotent


def test_already_logged_in_shell_is_reused(sock: Path, session: ConsoleSession) -> None:
    fake = FakeSerial(sock, logged_in=True)
    fake.start()
    try:
        session.open()
        session.login(timeout=20)
        assert "root" not in fake.lines
        assert session.cmd("echo migrated").strip() == "migrated"
    finally:
        fake.stop()


def test_wrong_password(sock: Path) -> None:
    fake = FakeSerial(sock, password="other")
    fake.start()
    console = ConsoleSession("fake", sock)
    try:
        console.open()
        with pytest.raises(LoginError, match="incorrect"):
            console.login(timeout=20)
    finally:
        console.close()
        fake.stop()
