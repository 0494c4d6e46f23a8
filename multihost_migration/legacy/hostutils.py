"""autotest.client.shared.utils (and autotest.client.utils): host commands,
sizes, hashes, the background thread and the statistic legacy tests use.

A host command whose program is missing (exit status 127) is TEST_NA naming
the program: the host lacks a capability the test needs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from multihost_migration.legacy import context
from multihost_migration.legacy.error import CmdError
from multihost_migration.verdicts import TestBaseException, TestNAError

log = logging.getLogger(__name__)

#: Exit status of a shell whose command was not found.
NOT_FOUND = 127


class CmdResult:
    """What a host command did (autotest's CmdResult)."""

    def __init__(self, command: str, exit_status: int, stdout: str, stderr: str,
                 duration: float) -> None:
        self.command = command
        self.exit_status = exit_status
        self.stdout = stdout
        self.stderr = stderr
        self.duration = duration

    def __repr__(self) -> str:
        return f"<CmdResult {self.command!r} exit {self.exit_status}>"


def missing_program(command: str, status: int, output: str) -> Optional[str]:
    """The program a shell could not find (exit 127, "not found"), else None."""
    if status != NOT_FOUND:
        return None
    found = re.search(r"([\w./+-]+): (?:command )?not found", output)
    if found:
        return found.group(1)
    words = command.split()
    return words[0] if words else command


def run(command: str, timeout: Optional[float] = None, ignore_status: bool = False,
        verbose: bool = True, stdin: Optional[str] = None, **_ignored: Any) -> CmdResult:
    """Run `command` in a shell on this host (with a deadline)."""
    if verbose:
        log.info("host command: %s", command)
    start = time.monotonic()
    try:
        proc = subprocess.run(command, shell=True, capture_output=True, text=True,
                              input=stdin, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        result = CmdResult(command, -1, str(err.stdout or ""), str(err.stderr or ""),
                           time.monotonic() - start)
        raise CmdError(command, result, f"timed out after {timeout} s") from None
    result = CmdResult(command, proc.returncode, proc.stdout, proc.stderr,
                       time.monotonic() - start)
    program = missing_program(command, proc.returncode, proc.stderr)
    if program is not None and not ignore_status:
        raise TestNAError(f"the host lacks {program!r} (host command {command!r}: "
                          f"{proc.stderr.strip()[-300:]})")
    if proc.returncode != 0 and not ignore_status:
        raise CmdError(command, result)
    return result


def system(command: str, timeout: Optional[float] = None, ignore_status: bool = False) -> int:
    return run(command, timeout, ignore_status).exit_status


def system_output(command: str, timeout: Optional[float] = None,
                  ignore_status: bool = False, retain_output: bool = False) -> str:
    return run(command, timeout, ignore_status).stdout.rstrip("\n")


_ORDERS = {"B": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def convert_data_size(size: str, default_sufix: str = "B") -> int:
    """'10M' -> bytes (binary orders); a bare number takes `default_sufix`."""
    size = str(size).strip()
    if size[-1:].upper() not in _ORDERS:
        size += default_sufix
    return int(float(size[:-1]) * _ORDERS[size[-1].upper()])


def hash_file(filename: str, size: Optional[int] = None, method: str = "md5") -> str:
    """Hex digest of the file (its first `size` bytes when given)."""
    digest = hashlib.new(method)
    left = size
    with open(filename, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            digest.update(chunk)
            if left is not None:
                left -= len(chunk)
    return digest.hexdigest()


class InterruptedThread(threading.Thread):
    """A thread whose join() re-raises the target's exception.  A verdict
    the target raises (TEST_NA: what it needs is missing) is also noted for
    the main thread, which raises it at its next legacy wait or guest
    command: legacy tests often start a thread and poll for its effect."""

    def __init__(self, target: Callable[..., Any], args: Sequence[Any] = (),
                 kwargs: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs or {})
        self._error: Optional[BaseException] = None
        self._retval: Any = None

    def run(self) -> None:
        try:
            self._retval = self._target_fn(*self._args, **self._kwargs)
        except BaseException as err:  # noqa: B036 - handed to join()
            self._error = err
            log.error("background thread %s: %s: %s", self.name, type(err).__name__, err)
            if isinstance(err, TestBaseException):
                try:
                    context.current().note_verdict(err)
                except TestBaseException:
                    pass

    def join(self, timeout: Optional[float] = None, suppress_exception: bool = False) -> Any:
        super().join(timeout)
        err, self._error = self._error, None
        if err is not None and not suppress_exception:
            raise err
        return self._retval


class Statistic:
    """Average, minimum and maximum of recorded values."""

    def __init__(self) -> None:
        self._sum = 0.0
        self._count = 0
        self._max: Optional[float] = None
        self._min: Optional[float] = None

    def record(self, value: float) -> None:
        self._count += 1
        self._sum += value
        self._max = value if self._max is None else max(self._max, value)
        self._min = value if self._min is None else min(self._min, value)

    def get_average(self) -> Optional[float]:
        return self._sum / self._count if self._count else None

    def get_min(self) -> Optional[float]:
        return self._min

    def get_max(self) -> Optional[float]:
        return self._max
