"""The error of a legacy call this layer does not serve: it names the call
and the line of the legacy test that made it.

    LegacyUnsupported: vm.copy_files_to is not served by the legacy layer
        (called at /srv/tp-qemu/provider/cpuflags.py:26)

It is a TestError (verdict ERROR: the test cannot run as written) and an
AttributeError, so `hasattr(obj, name)` on a legacy object stays False.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path
from typing import Optional

from multihost_migration.verdicts import TestError

_PACKAGE = str(Path(__file__).resolve().parents[1]) + os.sep
_STDLIB = tuple(str(Path(p).resolve()) + os.sep for p in
                {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})


def _ours(filename: str) -> bool:
    """Frames of this package, the standard library and frozen importlib."""
    if filename.startswith("<"):
        return True
    path = str(Path(filename).resolve())
    return path.startswith(_PACKAGE) or path.startswith(_STDLIB)


def caller_location(skip: int = 1) -> str:
    """file:line of the nearest caller outside this package and the stdlib
    (the legacy test module, or a helper of its checkout)."""
    frame = sys._getframe(skip)
    first: Optional[str] = None
    while frame is not None:
        here = f"{frame.f_code.co_filename}:{frame.f_lineno}"
        first = first or here
        if not _ours(frame.f_code.co_filename):
            return here
        frame = frame.f_back  # type: ignore[assignment]
    return first or "<unknown>"


class LegacyUnsupported(TestError, AttributeError):
    """A legacy call (or module) this layer does not serve."""

    def __init__(self, call: str, where: str, why: str = "") -> None:
        self.call = call
        self.where = where
        self.why = why
        text = f"{call} is not served by the legacy layer (called at {where})"
        super().__init__(text + (f": {why}" if why else ""))


def unsupported(call: str, why: str = "") -> LegacyUnsupported:
    """The error for `call`, located at the legacy caller; raise it."""
    return LegacyUnsupported(call, caller_location(2), why)
