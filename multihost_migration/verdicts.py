"""The verdict vocabulary, in one place: statuses, their order, what passes,
what each error means, and the exit status of a run.

The rule for verdict classes (README, "Verdicts"), applied by the client
job, the controller, preflight, the control file, JUnit, HTML and the exit
status alike:

    GOOD     every check passed
    WARN     passed, with something the user must look at (MultihostMigration.warn)
    TEST_NA  the hosts or the guest lack a capability the test needs (named)
    FAIL     a check of the guest or of the migration failed, also when a
             fault during the test caused it (a QEMU killed, hosts partitioned)
    ERROR    the test could not run as configured: bad configuration,
             unreachable or unusable hosts at the start, a host that became
             unresponsive, programs or images the suite needs missing, an odd
             machine left without a partner, the suite's own faults
    ABORT    interrupted (signal, Ctrl-C)

Library code never raises the test verdicts below (it raises
MigrationTestError subclasses); `status_of` maps any exception to a status.
"""

from __future__ import annotations

from multihost_migration.errors import (ClientInstallError, ConfigError, LabError,
                                        MigrationTestError, RemoteError, ReportError,
                                        StorageError, WheelhouseError)

# Worst first: a group's (or a run's) verdict is the most severe one inside it.
SEVERITY: tuple[str, ...] = ("ABORT", "ERROR", "FAIL", "WARN", "TEST_NA", "GOOD")
#: The test passed (WARN: with a notice).
PASSING = frozenset({"GOOD", "WARN"})
#: Something a reader must look at (highlighted in reports).
NOTABLE = frozenset({"ABORT", "ERROR", "FAIL", "WARN"})
#: Statuses a status.log line may carry besides the verdicts.
STATUSES = frozenset(SEVERITY) | {"START", "INFO", "ALERT", "NOSTATUS"}

#: Exit status of a job (client or autotest-remote) by its worst verdict.
EXIT_STATUS = {"GOOD": 0, "WARN": 0, "TEST_NA": 0, "FAIL": 1, "ERROR": 2, "ABORT": 130}

#: Errors that mean "could not run as configured", not "a check failed".
_SETUP_ERRORS = (ConfigError, LabError, RemoteError, StorageError, WheelhouseError,
                 ClientInstallError, ReportError)


def worst(*statuses: str) -> str:
    """The most severe of `statuses` (unknown ones ignored); GOOD for none."""
    ranked = [s for s in statuses if s in SEVERITY]
    return min(ranked, key=SEVERITY.index) if ranked else "GOOD"


def passed(status: str) -> bool:
    return status in PASSING


class TestBaseException(Exception):
    """Root of the verdicts a scenario (or a control file) raises on purpose."""

    __test__ = False  # not pytest test classes (inherited by the subclasses)
    status = "ERROR"


class TestError(TestBaseException):
    """The test could not run (its own setup failed)."""

    status = "ERROR"


class TestFail(TestBaseException):
    """The scenario's check failed."""

    status = "FAIL"


class TestNAError(TestBaseException):
    """The scenario cannot run here (missing capability, named); not a failure."""

    status = "TEST_NA"


class TestWarn(TestBaseException):
    """Passed with something to look at."""

    status = "WARN"


class Interrupted(BaseException):
    """The job received a termination signal."""


def abort_kind(err: BaseException) -> str:
    """How a host that stops on `err` aborts its sync sessions: an
    interruption stays one on every peer (errors.ABORT_KINDS)."""
    return "interrupted" if isinstance(err, (Interrupted, KeyboardInterrupt)) else "failed"


def status_of(err: BaseException) -> str:
    """The verdict an exception that ended a test stands for."""
    if isinstance(err, (Interrupted, KeyboardInterrupt)):
        return "ABORT"
    if isinstance(err, TestBaseException):
        return err.status
    if getattr(err, "unresponsive", False):   # PeerFailed: a peer stopped answering
        return "ERROR"
    if isinstance(err, _SETUP_ERRORS):
        return "ERROR"
    if isinstance(err, MigrationTestError):
        return "FAIL"
    return "ERROR"


def reason_of(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, (TestBaseException, MigrationTestError)):
        return text
    return f"{type(err).__name__}: {text}"


def exit_status(verdict: str) -> int:
    """0 GOOD/WARN/TEST_NA, 1 FAIL, 2 ERROR (and anything unknown), 130 ABORT."""
    return EXIT_STATUS.get(verdict, 2)
