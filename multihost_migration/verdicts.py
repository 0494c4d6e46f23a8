"""Test verdicts a scenario may raise on purpose.

Library code never raises these (it raises MigrationTestError subclasses);
the client job maps everything to autotest statuses:

    passed, MultihostMigration.warn -> WARN (passed; the reason says what to look at)
    TestFail / MigrationTestError   -> FAIL
    TestNAError                     -> TEST_NA
    ConfigError, any other error    -> ERROR
    interruption (signal, Ctrl-C)   -> ABORT
"""

from __future__ import annotations

from multihost_migration.errors import ConfigError, MigrationTestError


class TestFail(Exception):
    """The scenario's check failed."""

    __test__ = False  # not a pytest test class


class TestNAError(Exception):
    """The scenario cannot run here (missing feature); not a failure."""

    __test__ = False


class Interrupted(BaseException):
    """The job received a termination signal."""


def status_of(err: BaseException) -> str:
    if isinstance(err, (Interrupted, KeyboardInterrupt)):
        return "ABORT"
    if isinstance(err, TestNAError):
        return "TEST_NA"
    if isinstance(err, ConfigError):
        return "ERROR"
    if isinstance(err, (TestFail, MigrationTestError)):
        return "FAIL"
    return "ERROR"


def reason_of(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, (TestFail, TestNAError, MigrationTestError)):
        return text
    return f"{type(err).__name__}: {text}"


def exit_status(verdict: str) -> int:
    """A job's exit status: 0 passed (GOOD, WARN), 130 interrupted, 1 else."""
    return {"GOOD": 0, "WARN": 0, "ABORT": 130}.get(verdict, 1)
