"""Server test: run what cfg/multi-host-tests.cfg selects on one group of hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from multihost_migration.server.dispatch import CfgTestRunner, resolve
from multihost_migration.server.selection import select_tests
from multihost_migration.errors import ConfigError
from multihost_migration.remote import RemoteHost, SshTarget
from multihost_migration.server.install import ensure_client
from multihost_migration.server.job import ServerTest
from multihost_migration.server.preflight import Preflight

CFG = Path(__file__).resolve().parents[2] / "cfg" / "multi-host-tests.cfg"


class multihost_migration(ServerTest):  # noqa: N801 - autotest names tests by module
    def _install(self, targets: dict[str, SshTarget]) -> str:
        """The suite, at this controller's version, on every host; its python."""
        wheelhouse = self.job.wheelhouse()

        def install(host: str) -> str:
            self.job.progress.phase(self.tagged_testname, host, "client install")
            with RemoteHost(targets[host]) as remote:
                return ensure_client(remote, wheelhouse)

        pythons = self.job.parallel_simple(install, list(targets), return_results=True) or []
        for host, result in zip(targets, pythons):
            if isinstance(result, BaseException):
                raise result
        if len(set(pythons)) != 1:
            raise ConfigError(f"hosts got different client paths: {pythons}")
        return str(pythons[0])

    def run_once(self, machines: Sequence[str], extra_lines: Sequence[str] = (),
                 cfg: Optional[str] = None) -> None:
        options = self.job.options
        cfg_path = Path(cfg) if cfg else (options.cfg or CFG)
        tests = select_tests(cfg_path, list(extra_lines))
        for test in tests:  # user scenario directories are relative to the cfg
            if test.get("scenario_dirs"):
                test["scenario_dirs"] = " ".join(
                    str((cfg_path.parent / d).resolve()) for d in str(test["scenario_dirs"]).split())
        targets = {}
        for machine in machines:
            target = self.job.ssh_target(machine)
            targets[target.hostname] = target
        addresses = {h: resolve(t.hostname) for h, t in targets.items()}
        progress = self.job.progress
        remote_python = options.remote_python or self._install(targets)
        for host in targets:
            progress.phase(self.tagged_testname, host, "preflight")
        checks = Preflight(targets, tests[0], remote_python, addresses)
        checks.run()
        (self.outputdir / "preflight.txt").write_text(
            "\n".join(c.line() for c in checks.checks) + "\n")
        if checks.failures:
            for check in checks.failures:
                progress.message(f"preflight: {check.line()}")
            self.job.record("FAIL", self.tagged_testname, "preflight",
                            "preflight failed: " + "; ".join(
                                f"{c.host} {c.name}: {c.detail}" for c in checks.failures))
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
            _, _, summary = runner.run(test)
            summary["group"] = self.tagged_testname
            self.job.add_test_result(summary)
