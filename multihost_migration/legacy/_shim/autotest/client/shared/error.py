"""autotest.client.shared.error (legacy API): the suite's verdicts."""
from multihost_migration.legacy.error import (AutotestError, CmdError, JobError,
                                              TestBaseException, TestError, TestFail,
                                              TestNAError, TestSkipError, TestWarn, context,
                                              context_aware, get_context)

__all__ = ["AutotestError", "CmdError", "JobError", "TestBaseException", "TestError",
           "TestFail", "TestNAError", "TestSkipError", "TestWarn", "context", "context_aware",
           "get_context"]
