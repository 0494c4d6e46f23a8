"""autotest.client.shared.error: the verdict exceptions (ours, one
vocabulary: multihost_migration.verdicts) and the context helpers.

`context_aware` gives each call of the function its own context level;
`context(message, log)` names the step it is in (logged); an exception
leaving a context-aware function carries the context in `legacy_context`
and in the log, never changing the verdict's message.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable, Optional, TypeVar

from multihost_migration.verdicts import (TestBaseException, TestError, TestFail,
                                          TestNAError, TestWarn)

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
_local = threading.local()


class JobError(TestError):
    """The job could not go on (legacy name; a TestError here)."""


class AutotestError(TestError):
    """Legacy base of the suite's own errors."""


class CmdError(TestError):
    """A host command exited non-zero (autotest utils.run)."""

    def __init__(self, command: str, result: Any = None, additional_text: str = "") -> None:
        self.command = command
        self.result_obj = result
        self.additional_text = additional_text
        status = getattr(result, "exit_status", None)
        output = (getattr(result, "stdout", "") + getattr(result, "stderr", "")).strip()
        super().__init__(f"command {command!r} failed (exit status {status})"
                         f"{': ' + additional_text if additional_text else ''}"
                         f"{chr(10) + output[-2000:] if output else ''}")


TestSkipError = TestNAError


def _stack() -> list[Optional[str]]:
    stack: Optional[list[Optional[str]]] = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def context(message: str = "", log_func: Optional[Callable[..., Any]] = None) -> None:
    """Name the step the current context-aware function is in."""
    stack = _stack()
    if stack:
        stack[-1] = message or None
    if message and log_func is not None:
        log_func("Context: %s", message)


def get_context() -> Optional[str]:
    """The contexts of the calls in progress, outermost first, joined."""
    parts = [c for c in _stack() if c]
    return " --> ".join(parts) if parts else None


def context_aware(fn: F) -> F:
    """A new context level for each call of `fn`."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack = _stack()
        stack.append(None)
        try:
            return fn(*args, **kwargs)
        except BaseException as err:
            where = get_context()
            if where and not hasattr(err, "legacy_context"):
                try:
                    err.legacy_context = where  # type: ignore[attr-defined]
                except AttributeError:
                    pass
                log.info("failed in context: %s", where)
            raise
        finally:
            stack.pop()
    return wrapper  # type: ignore[return-value]


__all__ = ["AutotestError", "CmdError", "JobError", "TestBaseException", "TestError",
           "TestFail", "TestNAError", "TestSkipError", "TestWarn", "context", "context_aware",
           "get_context"]
