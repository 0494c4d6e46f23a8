"""Server test: run what cfg/multi-host-tests.cfg selects on one group of hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from multihost_migration.server.dispatch import CfgTestRunner, resolve
from multihost_migration.server.selection import select_tests
from multihost_migration.errors import ConfigError, RemoteError
from multihost_migration.remote import RemoteHost, SshTarget
from multihost_migration.server.install import ensure_client
from multihost_migration.server.job import ServerTest
from multihost_migration.server.preflight import Preflight
from multihost_migration.verdicts import reason_of

CFG = Path(__file__).resolve().parents[2] / "cfg" / "multi-host-tests.cfg"


class multihost_migration(ServerTest):  # noqa: N801 - autotest names tests by module
    def _install(self, targets: dict[str, SshTarget]) -> Optional[str]:
        """The suite, at this controller's version, on every host; its python."""
        wheelhouse = self.job.wheelhouse()

        def install(host: str) -> str:
            self.job.progress.phase(self.tagged_testname, host, "client install")
            with RemoteHost(targets[host]) as remote:
                return ensure_client(remote, wheelhouse)

        pythons = self.job.parallel_simple(install, list(targets), return_results=True) or []
        failed = [(host, result) for host, result in zip(targets, pythons)
                  if isinstance(result, BaseException)]
        for host, err in failed:   # every host's failure, not only the first
            self._setup_failure(host, "client install", reason_of(err))
        if failed:
            return None
        if len(set(pythons)) != 1:
            raise ConfigError(f"hosts got different client paths: {pythons}")
        return str(pythons[0])

    def _setup_failure(self, host: str, phase: str, reason: str) -> None:
        """One JUnit error testcase per host that failed before any test."""
        self.job.record_setup_failure(f"{host}: {phase}", self.tagged_testname, [host],
                                      reason, logdir=self.job.resultdir / "debug")

    def _preflight_failed(self, checks: Preflight, hosts: Sequence[str]) -> None:
        by_host: dict[str, list[str]] = {}
        for check in checks.failures:
            self.job.progress.message(f"preflight: {check.line()}")
            # A host's own problem names the host; the cfg's concerns the group.
            concerned = check.host if check.host in hosts else "params"
            by_host.setdefault(concerned, []).append(
                f"{check.host} {check.name}: {check.detail}")
        for concerned, problems in by_host.items():
            self.job.record_setup_failure(
                f"{concerned}: preflight", self.tagged_testname,
                [concerned] if concerned in hosts else list(hosts),
                "preflight failed: " + "; ".join(problems), logdir=self.outputdir)

    def run_once(self, machines: Sequence[str], extra_lines: Sequence[str] = (),
                 cfg: Optional[str] = None, only_tests: Sequence[str] = ()) -> None:
        """`only_tests`: these of the selection (shortnames; empty: all of it)."""
        options = self.job.options
        cfg_path = Path(cfg) if cfg else (options.cfg or CFG)
        tests = select_tests(cfg_path, list(extra_lines))
        if only_tests:
            tests = [t for t in tests if t["shortname"] in set(only_tests)]
        for test in tests:  # user scenario directories are relative to the cfg
            if test.get("scenario_dirs"):
                test["scenario_dirs"] = " ".join(
                    str((cfg_path.parent / d).resolve()) for d in str(test["scenario_dirs"]).split())
        targets = {}
        for machine in machines:
            target = self.job.ssh_target(machine)
            targets[target.hostname] = target
        addresses = {}
        for host, target in targets.items():
            try:
                addresses[host] = resolve(target.connect_address)
            except RemoteError as err:
                self._setup_failure(host, "address", str(err))
        if len(addresses) < len(targets):
            return
        progress = self.job.progress
        remote_python = options.remote_python or self._install(targets)
        if remote_python is None:
            return
        for host in targets:
            progress.phase(self.tagged_testname, host, "preflight")
        checks = Preflight(targets, tests, remote_python, addresses)  # every test's needs
        checks.run()
        (self.outputdir / "preflight.txt").write_text(
            "\n".join(c.line() for c in checks.checks) + "\n")
        if checks.failures:
            self._preflight_failed(checks, list(targets))
            return
        progress.message(f"preflight on {','.join(targets)}: {len(checks.checks)} checks passed")
        runner = CfgTestRunner(self.job.status, self.outputdir, targets,
                               remote_python=remote_python, verbose=options.verbose,
                               cancel=self.job.abort_event, progress=progress,
                               group=self.tagged_testname)
        for test in tests:
            if self.job.abort_event.is_set():
                self.job.record("ABORT", test["shortname"], test["shortname"],
                                "not started: the job was interrupted")
                continue
            missing = checks.not_applicable(test)   # a QEMU feature a host lacks
            if missing:
                self.job.record_setup_failure(str(test["shortname"]), self.tagged_testname,
                                              list(targets), missing, logdir=self.outputdir,
                                              status="TEST_NA")
                continue
            test.update(checks.pair_params(test))   # for MigrationPlan.supports()
            _, _, summary = runner.run(test)
            summary["group"] = self.tagged_testname
            summary["qemu"] = checks.qemu_summary(test)   # versions, shared machine types
            self.job.add_test_result(summary)
