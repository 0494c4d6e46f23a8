"""remote._collect against a scripted channel: the end of a command's output
is its EOF, not its exit status (sshd may send the status first)."""

from __future__ import annotations

import threading
import time

from multihost_migration import remote


class _ScriptedChannel:
    """Exit status at once; the output in two pieces, 0.3 s apart; then EOF
    (or never, `eof=False`: a daemon kept the command's stdout open)."""

    def __init__(self, eof: bool = True) -> None:
        self.start = time.monotonic()
        self.pieces = [(0.0, b"first half "), (0.3, b"second half\n")]
        self.eof = eof
        self.status_event = threading.Event()
        self.status_event.set()

    def settimeout(self, _timeout: float) -> None:
        pass

    def _due(self) -> bool:
        return bool(self.pieces) and time.monotonic() - self.start >= self.pieces[0][0]

    def recv_ready(self) -> bool:
        return self._due()

    def recv(self, _n: int) -> bytes:
        return self.pieces.pop(0)[1] if self._due() else b""

    def recv_stderr_ready(self) -> bool:
        return False

    def exit_status_ready(self) -> bool:
        return True

    @property
    def eof_received(self) -> bool:
        return self.eof and not self.pieces


def test_output_after_the_exit_status_is_kept() -> None:
    out, err = remote._collect(_ScriptedChannel(), time.monotonic() + 10, None)  # type: ignore[arg-type]
    assert (out, err) == ("first half second half\n", "")


def test_without_eof_the_wait_ends_a_grace_after_the_exit() -> None:
    start = time.monotonic()
    out, _ = remote._collect(_ScriptedChannel(eof=False), start + 30, None)  # type: ignore[arg-type]
    assert out == "first half second half\n"
    assert time.monotonic() - start < remote.EOF_GRACE + 1.0
