"""Poller: rounds every `interval` s between __enter__ and __exit__; False or
an exception from a round ends the thread; __exit__ waits for it."""

from __future__ import annotations

import threading
import time

import pytest

from multihost_migration.poller import Poller


class Counter(Poller):
    interval = 0.01

    def __init__(self, stop_after: int = 0, fail_at: int = 0) -> None:
        super().__init__("counter")
        self.rounds = 0
        self.stop_after, self.fail_at = stop_after, fail_at
        self.done = threading.Event()

    def poll(self) -> bool:
        self.rounds += 1
        if self.rounds == self.fail_at:
            self.done.set()
            raise RuntimeError("round failed")
        if self.rounds == self.stop_after:
            self.done.set()
            return False
        return True


def _thread_gone(poller: Poller, timeout: float = 5.0) -> bool:
    poller._thread.join(timeout)
    return not poller._thread.is_alive()


def test_polls_until_exit_and_then_never_again() -> None:
    with Counter() as counter:
        deadline = time.monotonic() + 5
        while counter.rounds < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert counter.rounds >= 3
    assert _thread_gone(counter)
    seen = counter.rounds
    time.sleep(0.05)
    assert counter.rounds == seen and counter.error is None


def test_false_ends_the_thread_early() -> None:
    with Counter(stop_after=2) as counter:
        assert counter.done.wait(5)
        assert _thread_gone(counter)
    assert counter.rounds == 2 and counter.error is None


def test_an_exception_ends_the_thread_and_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    with Counter(fail_at=1) as counter:
        assert counter.done.wait(5)
        assert _thread_gone(counter)
    assert isinstance(counter.error, RuntimeError)
    assert "counter: round failed" in caplog.text


def test_the_base_class_has_no_round() -> None:
    with pytest.raises(NotImplementedError):
        Poller("bare").poll()
