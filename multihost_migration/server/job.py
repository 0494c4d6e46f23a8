"""The server job: what a control file sees as `job`.

    job.run_test(name, tag=..., **dargs)   run server test `name` (server_tests/NAME/NAME.py)
    job.record(status, subdir, operation, reason)
    job.parallel_simple(function, arglist) one thread per argument, errors collected
    job.resultdir, job.machines, job.args, job.control, job.status
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from multihost_migration.errors import ConfigError
from multihost_migration.remote import SshTarget
from multihost_migration.report.progress import Progress
from multihost_migration.server.inventory import Pool, ssh_target
from multihost_migration.server.sharding import Shard
from multihost_migration.status import StatusLog
from multihost_migration.verdicts import PASSING, reason_of, status_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOptions:
    """What the command line decided, parsed once."""
    resultdir: Path
    control: Path
    machines: list[str]
    args: list[str]
    ssh_defaults: dict[str, Any] = field(default_factory=dict)
    remote_python: Optional[str] = None     # None: install the suite on the hosts
    verbose: bool = False
    cfg: Optional[Path] = None
    pool: Optional[Pool] = None             # the hosts as the inventory gave them
    shard: Optional[Shard] = None           # --shard I/N
    identity: str = ""                      # what all shards of this job share


class ServerTest:
    """Base of server tests: `run_once(**dargs)` does the work."""

    def __init__(self, job: "ServerJob", outputdir: Path, tagged_testname: str) -> None:
        self.job = job
        self.outputdir = self.resultsdir = outputdir
        self.tagged_testname = tagged_testname

    def run_once(self, **dargs: Any) -> None:
        raise NotImplementedError


class ServerJob:
    def __init__(self, options: JobOptions) -> None:
        self.options = options
        self.resultdir = options.resultdir
        self.control = str(options.control)
        self.machines = options.machines
        self.args = options.args
        self.status = StatusLog(self.resultdir / "status.log")
        self.progress = Progress(sys.stdout, sys.stdout.isatty())
        self.tests: list[dict[str, Any]] = []   # filled by server tests, for results.json
        # Set on SIGINT/SIGTERM: clients get Ctrl-C, no new test starts.
        self.abort_event = threading.Event()
        self._wheelhouse: Any = None
        self._tests_lock = threading.Lock()

    # -- used by server tests ---------------------------------------------------

    def wheelhouse(self) -> Any:
        """The suite and its dependencies as wheels (built once per job, cached)."""
        from multihost_migration.server.wheelhouse import build_wheelhouse, default_cache_dir
        with self._tests_lock:
            if self._wheelhouse is None:
                self._wheelhouse = build_wheelhouse(default_cache_dir())
            return self._wheelhouse

    def ssh_target(self, machine: str) -> SshTarget:
        return ssh_target(machine, self.options.ssh_defaults, self.options.pool)

    def add_test_result(self, entry: dict[str, Any]) -> None:
        with self._tests_lock:
            self.tests.append(entry)

    def record_setup_failure(self, name: str, group: str, hosts: Sequence[str],
                             reason: str, logdir: Optional[Path] = None,
                             status: str = "ERROR") -> None:
        """A failure before any test ran (pairing, SSH, install, preflight, the
        control file): a status.log verdict line *and* a results.json entry, so
        that JUnit shows it as a testcase instead of an empty, green run."""
        self.record(status, name, "setup", reason)
        self.add_test_result({
            "name": name, "group": group, "hosts": list(hosts), "status": status,
            "reason": reason, "duration": 0.0, "setup": True,
            "logdir": str(logdir or self.resultdir / "debug"),
            "host_results": {h: {"status": status, "reason": reason} for h in hosts},
            "migrations": []})

    # -- the control file API ---------------------------------------------------

    def record(self, status: str, subdir: Optional[str], operation: Optional[str],
               reason: str = "") -> None:
        self.status.record(status, subdir, operation, reason)
        if status not in ("GOOD", "INFO", "START"):
            self.progress.message(f"{status:<6} {subdir or operation or 'job'}: {reason}")

    def run_test(self, name: str, tag: Optional[str] = None, **dargs: Any) -> bool:
        """Run server test `name`; returns True if it passed."""
        tagged = f"{name}.{tag}" if tag else name
        outputdir = self.resultdir / tagged
        outputdir.mkdir(parents=True, exist_ok=True)
        cls = self._load_test(name)
        with self.status.group(tagged, tagged, buffered=True) as group:
            try:
                cls(self, outputdir, tagged).run_once(**dargs)
            except Exception as err:
                log.debug("%s", traceback.format_exc())
                machines = [str(m) for m in dargs.get("machines", ())]
                self.record_setup_failure(tagged, tagged, machines, reason_of(err),
                                          logdir=outputdir, status=status_of(err))
        return all(s in PASSING for s in group.statuses)

    def _load_test(self, name: str) -> type[ServerTest]:
        if not name.isidentifier():
            raise ConfigError(f"server test name {name!r} is not an identifier")
        roots = [Path(self.control).resolve().parent, Path.cwd(),
                 Path(__file__).resolve().parents[2]]
        for root in roots:
            path = root / "server_tests" / name / f"{name}.py"
            if path.is_file():
                spec = importlib.util.spec_from_file_location(f"server_tests.{name}", path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                cls = getattr(module, name, None)
                if not isinstance(cls, type) or not issubclass(cls, ServerTest):
                    raise ConfigError(f"{path} defines no ServerTest subclass named {name}")
                return cls
        raise ConfigError(f"server test {name!r} not found under server_tests/ in "
                          + ", ".join(str(r) for r in roots))

    def parallel_simple(self, function: Callable[[Any], Any], arglist: Sequence[Any],
                        log: bool = True, timeout: Optional[float] = None,
                        return_results: bool = False) -> Optional[list[Any]]:
        """Run function(arg) for each arg in its own thread; wait for all."""
        results: list[Any] = [None] * len(arglist)
        context = self.status.context()

        def one(i: int, arg: Any) -> None:
            self.status.adopt(context)
            try:
                results[i] = function(arg)
            except BaseException as err:  # noqa: B036 - reported below
                results[i] = err

        threads = [threading.Thread(target=one, args=(i, a), name=f"parallel-{i}", daemon=True)
                   for i, a in enumerate(arglist)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
        if return_results:
            return results
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return None
