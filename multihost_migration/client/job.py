"""The per-host client job: runs the scenario named by `type` on this host.

    python -m multihost_migration.client --params PARAMS.json --resultsdir DIR

PARAMS.json (written by the server over SFTP, mode 0600) holds the test's
params for this host, the sync secret included.  The job writes DIR:

    status.log           autotest format, also streamed on stdout (STATUS_PREFIX)
    debug/client.DEBUG   everything (QEMU command lines, QMP traffic)
    debug/client.INFO    one-line summaries
    params.json          the params, secrets redacted
    migrations.json      every migration: hosts, VMs, QEMU statistics
    <vm>/<mig>-<role>/   QEMU and serial logs of every VM incarnation

Exit status: 0 GOOD/WARN, 1 FAIL/ERROR/TEST_NA, 2 bad invocation, 130 ABORT.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, Optional

from multihost_migration.client.channel import hold_job_lock, start_relay_reader
from multihost_migration.errors import ConfigError
from multihost_migration.legacy import switch as legacy_switch
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.process import kill_all_started
from multihost_migration.results_format import (MIGRATIONS_FILE, PROGRESS_PREFIX,
                                                STATUS_PREFIX, MigrationRecord, redact, role_of,
                                                write_migrations)
from multihost_migration.status import StatusLog
from multihost_migration.verdicts import Interrupted, exit_status, reason_of, status_of

log = logging.getLogger("multihost_migration.client")

BUILTIN_SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


class ClientTest:
    """What scenario code sees as `test`: directories and the migration list."""

    def __init__(self, name: str, resultsdir: Path, params: Params) -> None:
        self.name = self.tag = name
        self.resultsdir = self.outputdir = self.logdir = resultsdir
        self.debugdir = resultsdir / "debug"
        self.params = params
        self.migrations: list[Any] = []
        #: Passed, but with something the user must see (MultihostMigration.warn):
        #: the verdict becomes WARN with these as its reason.
        self.warnings: list[str] = []


def find_scenario(test_type: str, search_dirs: list[Path]) -> ModuleType:
    """Import the scenario module `test_type`.py from the first dir that has it."""
    if not test_type.isidentifier():
        raise ConfigError(f"type = {test_type!r} is not a valid scenario module name")
    for directory in search_dirs + [BUILTIN_SCENARIOS]:
        path = directory / f"{test_type}.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location(
                f"multihost_migration.scenarios._loaded.{test_type}", path)
            if spec is None or spec.loader is None:
                break
            module = importlib.util.module_from_spec(spec)
            # Registered before it runs, as `import` does: dataclasses and
            # pickling look their module up in sys.modules.
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            if not callable(getattr(module, "run", None)):
                raise ConfigError(f"scenario {path} has no run(test, params, env) function")
            return module
    searched = ", ".join(str(d) for d in search_dirs + [BUILTIN_SCENARIOS])
    raise ConfigError(f"unknown test type {test_type!r}: no {test_type}.py in {searched}")


def _setup_logging(debugdir: Path) -> None:
    debugdir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    fmt = logging.Formatter("%(asctime)s %(levelname)-5s %(threadName)s %(name)s| %(message)s")
    for level, suffix in ((logging.DEBUG, "DEBUG"), (logging.INFO, "INFO")):
        handler = logging.FileHandler(debugdir / f"client.{suffix}")
        handler.setLevel(level)
        handler.setFormatter(fmt)
        root.addHandler(handler)
    phases = logging.StreamHandler(sys.stdout)   # to the controller's live display
    phases.setFormatter(logging.Formatter(PROGRESS_PREFIX + "%(message)s"))
    logging.getLogger("multihost_migration.progress").addHandler(phases)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s| %(message)s",
                                           "%H:%M:%S"))
    root.addHandler(console)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_later_signals: list[str] = []


def _on_signal(signum: int, frame: Optional[FrameType]) -> None:
    """The first stop signal interrupts the scenario; later ones (the
    controller's Ctrl-C is often followed by a SIGHUP when it hangs up) are
    only noted, so that cleanup and the ABORT verdict line always complete."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _note_signal)
    raise Interrupted(f"interrupted: received {signal.Signals(signum).name}")


def _note_signal(signum: int, frame: Optional[FrameType]) -> None:
    _later_signals.append(signal.Signals(signum).name)


def run_job(params_file: Path, resultsdir: Path) -> int:
    resultsdir.mkdir(parents=True, exist_ok=True)
    _setup_logging(resultsdir / "debug")
    raw = json.loads(params_file.read_text())
    params = Params(raw)
    name = str(params.get("shortname") or params.get("name") or "migration")
    (resultsdir / "params.json").write_text(json.dumps(redact(raw), indent=1, sort_keys=True))
    status = StatusLog(resultsdir / "status.log", echo=sys.stdout, prefix=STATUS_PREFIX)
    test = ClientTest(name, resultsdir, params)
    env = Env()
    verdict, reason = "GOOD", "completed successfully"
    start = time.monotonic()
    subdir = f"{name}/{params.get('hostid', 'localhost')}"
    try:
        with status.group(subdir, name):
            try:
                legacy = legacy_switch.find_legacy(params)   # legacy_api: legacy/switch.py
                if legacy is not None:
                    legacy_switch.run(legacy, test, params, env)
                else:
                    search = [Path(d) for d in params.objects("scenario_dirs")]
                    module = find_scenario(str(params.get("type", "")), search)
                    log.info("running %s (%s) on %s", name, module.__file__,
                             params.get("hostid"))
                    module.run(test, params, env)
                if test.warnings:
                    verdict, reason = "WARN", "; ".join(test.warnings)
            except BaseException as err:
                verdict, reason = status_of(err), reason_of(err)
                log.error("%s: %s", verdict, reason)
                log.debug("%s", traceback.format_exc())
            finally:
                try:
                    env.destroy_all(gracefully=False)
                except Exception as err:  # the verdict stays the scenario's
                    log.error("cleanup: %s", err)
                stray = kill_all_started()
                if stray:
                    log.warning("killed QEMU processes no VM object owned any more: %s", stray)
            status.record(verdict, subdir, name, reason,
                          fields={"duration": f"{time.monotonic() - start:.1f}"})
    finally:
        _write_migrations(resultsdir, test)
    return exit_status(verdict)


def _write_migrations(resultsdir: Path, test: ClientTest) -> None:
    write_migrations(resultsdir / MIGRATIONS_FILE, (
        MigrationRecord(id=m.mig_id, src=m.src, dst=m.dst, vms=tuple(m.vms_name),
                        role=role_of(m.is_src(), m.is_dst()), stats=m.stats)
        for m in test.migrations))


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="multihost_migration.client")
    p.add_argument("--params", type=Path, required=True)
    p.add_argument("--resultsdir", type=Path, required=True)
    args = p.parse_args(argv)
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _on_signal)
    if not args.params.is_file():
        print(f"client: params file {args.params} not found", file=sys.stderr)
        return 2
    os.umask(0o022)
    hold_job_lock(args.params.resolve().parent)   # this job's workdir: not to be swept
    start_relay_reader()
    return run_job(args.params, args.resultsdir)
