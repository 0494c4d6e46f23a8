"""A context manager that polls something in a daemon thread while a
migration (or any other step) runs.

    with ConnectionCounter(pid, port) as counter:   # the thread starts
        vm.migrate(...)
    counter.most                                    # the thread has stopped

Subclasses write `poll()`: one round, run every `interval` s (the first one
after `interval` s); it returns False to end the thread early.  An exception
out of `poll()` ends the thread too and is logged: pollers gather evidence or
nudge QEMU, and whatever they watch reports its own errors.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional, TypeVar

log = logging.getLogger(__name__)

_P = TypeVar("_P", bound="Poller")


class Poller:
    #: Seconds between two rounds.
    interval: float = 0.1
    #: Seconds __exit__ waits for a round in progress to end.
    join_timeout: float = 5.0

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: Optional[BaseException] = None   # what ended the thread, if anything
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)

    def poll(self) -> Optional[bool]:
        """One round; return False to stop polling."""
        raise NotImplementedError

    def __enter__(self: _P) -> _P:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.join_timeout)
        if self._thread.is_alive():
            log.warning("%s: still in a round %.0f s after being told to stop",
                        self.name, self.join_timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.poll() is False:
                    return
            except Exception as err:
                log.warning("%s: %s", self.name, err)
                self.error = err
                return
