"""The client job's side of its SSH channel and of its host.

- The controller's relay (relay.py) arrives on standard input, one line per
  report; a reader thread hands each to `relay.deliver`.  The terminal's
  echo is turned off so the lines do not come back into the job's output.
- The job holds an exclusive lock on WORKDIR/lock while it runs: a later
  job's sweep on this host removes only workdirs whose lock is free (their
  job is gone), never those of a job still running, even a frozen one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import termios
import threading
from pathlib import Path
from typing import Optional, TextIO

from multihost_migration import relay

log = logging.getLogger(__name__)

LOCK_FILE = "lock"


def start_relay_reader(stream: Optional[TextIO] = None) -> threading.Thread:
    """Read relay lines from `stream` (standard input) until it ends."""
    source = stream if stream is not None else sys.stdin
    _no_echo(source)
    thread = threading.Thread(target=_read, args=(source,), name="relay-reader", daemon=True)
    thread.start()
    return thread


def _read(source: TextIO) -> None:
    try:
        for line in source:
            report = relay.decode(line)
            if report is not None:
                relay.deliver(report)
    except (OSError, ValueError) as err:   # the channel went away: nothing more to read
        log.debug("relay reader: %s", err)


def _no_echo(source: TextIO) -> None:
    try:
        fd = source.fileno()
        if not os.isatty(fd):
            return
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (OSError, ValueError, termios.error) as err:
        log.debug("relay reader: cannot turn echo off: %s", err)


def hold_job_lock(directory: Path) -> int:
    """Lock DIRECTORY/lock for the life of this process; returns the fd.
    Never inherited by QEMU (close-on-exec)."""
    fd = os.open(directory / LOCK_FILE, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        raise RuntimeError(f"{directory / LOCK_FILE} is held by another job") from err
    return fd
