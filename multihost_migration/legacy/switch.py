"""Switching the legacy layer on, in a client job that runs a legacy test.

When: `legacy_api = yes` in the params, or (`legacy_api = auto`, the
default) when the module `type` names imports `autotest` or `virttest`;
`legacy_api = no` never.  Nothing changes for any other job: the names
`autotest` and `virttest` are served from this package's private `_shim`
directory, put first on sys.path only by `activate()`, so an installed
avocado-vt stays what `import virttest` gives everywhere else.

Where legacy modules are found: each directory of `scenario_dirs` (the
job's copy: a checkout travels whole, server/shipping.py; and, when the
copy lacks them, `local_scenario_dirs`: the controller's paths, if a host
sees them) is searched for
`<type>.py`, and, when it is a test-provider checkout (tp-qemu style: a
`provider/` package or `*/tests/` directories), in its `*/tests/`
directories (multi_host_migration/ first); the checkout root goes on
sys.path, so `from provider import cpuflags` and `from generic.tests
import kdump` import from it.  A module name under `autotest.`/`virttest.`
the shim lacks is LegacyUnsupported naming it and the importing line.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Sequence

from multihost_migration.legacy import context, needs
from multihost_migration.legacy.env import LegacyEnv, LegacyTest
from multihost_migration.legacy.unsupported import LegacyUnsupported, caller_location
from multihost_migration.params import Params, parse_bool
from multihost_migration.qemu.env import Env
from multihost_migration.verdicts import TestNAError

log = logging.getLogger(__name__)

SHIM = Path(__file__).resolve().parent / "_shim"
LEGACY_ROOTS = ("autotest", "virttest")
_LEGACY_IMPORT = re.compile(r"^\s*(?:from|import)\s+(?:autotest|virttest)\b", re.M)
#: Test directories of a checkout, searched first (tp-qemu's layout).
FIRST_SUBDIRS = ("multi_host_migration", "generic", "qemu")


def is_checkout(directory: Path) -> bool:
    return (directory / "provider").is_dir() or any(directory.glob("*/tests"))


def module_dirs(directory: Path) -> list[Path]:
    """Where modules are looked up in a scenario directory."""
    dirs = [directory]
    if is_checkout(directory):
        first = [directory / name / "tests" for name in FIRST_SUBDIRS]
        dirs += [d for d in first if d.is_dir()]
        dirs += [d for d in sorted(directory.glob("*/tests")) if d not in first]
    return dirs


def search_dirs(params: Params) -> list[Path]:
    """scenario_dirs, then local_scenario_dirs present on this host."""
    dirs = [Path(d) for d in params.objects("scenario_dirs")]
    dirs += [Path(d) for d in params.objects("local_scenario_dirs") if Path(d).is_dir()]
    return dirs


def locate(name: str, dirs: Sequence[Path]) -> Optional[Path]:
    if not name.isidentifier():
        return None
    for directory in dirs:
        for where in module_dirs(directory):
            path = where / f"{name}.py"
            if path.is_file():
                return path
    return None


def wanted(params: Params, path: Path) -> bool:
    """Does this job run `path` with the legacy layer on?"""
    mode = str(params.get("legacy_api", "auto")).strip().lower()
    if mode == "auto":
        return bool(_LEGACY_IMPORT.search(path.read_text(errors="replace")))
    return parse_bool(mode, "parameter 'legacy_api'")


def find_legacy(params: Params) -> Optional[Path]:
    """The legacy module this job runs, or None (not a legacy job)."""
    path = locate(str(params.get("type", "")), search_dirs(params))
    if path is None or not wanted(params, path):
        return None
    return path


class _Unserved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on sys.meta_path: a legacy module name the shim lacks."""

    def find_spec(self, fullname: str, path: Any, target: Any = None
                  ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname.split(".")[0] in LEGACY_ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        raise LegacyUnsupported(f"module {spec.name}", caller_location(2))

    def exec_module(self, module: ModuleType) -> None:
        raise LegacyUnsupported(f"module {module.__name__}", caller_location(2))


def activate(params: Params, test: Any, env: Env) -> context.LegacyContext:
    """The legacy layer on for this process (sys.path, import hook, context)."""
    dirs = search_dirs(params)
    roots = [d for d in dirs if is_checkout(d)]
    for entry in [str(SHIM)] + [str(r) for r in roots]:
        if entry not in sys.path:
            sys.path.insert(0 if entry == str(SHIM) else 1, entry)
    for name in list(sys.modules):   # a real avocado-vt loaded before: not ours
        if name.split(".")[0] in LEGACY_ROOTS and \
                not str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(SHIM)):
            del sys.modules[name]
    if importlib.util.find_spec("six") is None:
        sys.path.append(str(SHIM / "_fallback"))
    if not any(isinstance(f, _Unserved) for f in sys.meta_path):
        sys.meta_path.append(_Unserved())
    params.setdefault("main_vm", (params.objects("vms") or ["vm1"])[0])
    ctx = context.LegacyContext(params, LegacyTest(test, roots[0] if roots else None),
                                LegacyEnv(env), dirs)
    context.set_current(ctx)
    log.info("legacy API on: shim %s, test checkouts %s", SHIM, [str(r) for r in roots])
    return ctx


def load(path: Path) -> ModuleType:
    """Import a legacy module from its file (as the legacy loader did)."""
    spec = importlib.util.spec_from_file_location(f"legacy_tests.{path.stem}", path)
    if spec is None or spec.loader is None:
        raise LegacyUnsupported(f"module file {path}", str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as err:   # a module neither served nor installed
        raise LegacyUnsupported(f"module {err.name or err}", _import_site(err),
                                str(err)) from err
    return module


def _import_site(err: BaseException) -> str:
    """file:line of the legacy import that failed (the deepest frame of
    the test checkout in the traceback)."""
    where = "<unknown>"
    tb = err.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith("<") and not filename.startswith(sys.prefix) and \
                not filename.startswith(sys.base_prefix) and "multihost_migration" not in filename:
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def run(path: Path, test: Any, params: Params, env: Env) -> None:
    """Run the legacy module `path`'s run(test, params, env) on this host."""
    lacking = needs.missing(params)
    if lacking is not None:
        raise TestNAError(lacking)
    ctx = activate(params, test, env)
    log.info("running legacy test %s (%s)", params.get("type"), path)
    module = load(path)
    runner = getattr(module, "run", None)
    if not callable(runner):
        raise LegacyUnsupported(f"{path.name} without run(test, params, env)", str(path))
    runner(ctx.test, params, ctx.env)
