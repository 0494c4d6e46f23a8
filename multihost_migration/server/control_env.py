"""The namespace a server control file runs in, shaped like autotest's.

Names: job, machines, args, hosts, autotest_remote, parallel_simple,
subcommand, utils, error (and the error classes themselves), host_id.
"""

from __future__ import annotations

import types
from typing import Any, Sequence

from multihost_migration.remote import RemoteHost, SshTarget
from multihost_migration.server.inventory import form_pairs
from multihost_migration.server.job import ServerJob
from multihost_migration.server.requirements import Plan, plan_for_job
from multihost_migration.server.sharding import shard_pairs
from multihost_migration.verdicts import TestError, TestFail, TestNAError, TestWarn


class AutoservError(Exception):
    """Base of the job-level errors a control file may raise (verdict ERROR)."""


class JobError(AutoservError):
    """The job cannot run (bad machines, bad arguments)."""


class AutoservRunError(AutoservError):
    pass


class AutoservSSHTimeout(AutoservError):
    pass


# The test verdicts are the suite's own (verdicts.py): one vocabulary.
ERRORS = {cls.__name__: cls for cls in (AutoservError, JobError, TestError, TestFail,
                                         TestNAError, TestWarn, AutoservRunError,
                                         AutoservSSHTimeout)}


def form_ntuples_from_machines(machines: Sequence[str], n: int = 2
                               ) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """Group machines n by n, in order; leftovers come back as failures."""
    ntuples, failures = [], []
    full = len(machines) - len(machines) % n
    for i in range(0, full, n):
        ntuples.append(list(machines[i:i + n]))
    for machine in machines[full:]:
        failures.append((machine, f"machine {machine} left without a partner: "
                                  f"the test needs groups of {n} machines"))
    return ntuples, failures


def extra_cfg_lines(args: Sequence[str]) -> list[str]:
    """Control-file arguments as cfg lines: key=value, 'only X', 'no X'."""
    lines = []
    for arg in args:
        if arg == "all":
            continue
        if arg.startswith(("only ", "no ")) or "=" in arg:
            key, eq, value = arg.partition("=")
            lines.append(arg if not eq or arg.startswith(("only ", "no "))
                         else f"{key.strip()} = {value.strip()}")
        else:
            raise JobError(f"control argument {arg!r} is neither key=value, "
                           "'only FILTER', 'no FILTER' nor 'all'")
    return lines


def host_id(machine: str) -> str:
    return SshTarget.parse(machine).hostname


def namespace(job: ServerJob) -> dict[str, Any]:
    def create_host(hostname: str, **kwargs: Any) -> RemoteHost:
        return RemoteHost(job.ssh_target(hostname))

    hosts = types.SimpleNamespace(create_host=create_host, RemoteHost=RemoteHost)
    def form_ntuples(machines: Sequence[str], n: int = 2
                     ) -> tuple[list[list[str]], list[tuple[str, str]]]:
        """As form_ntuples_from_machines, keeping the inventory's pair groups."""
        pairs, rest = form_pairs(list(machines), job.options.pool, n)
        return pairs, form_ntuples_from_machines(rest, n)[1]

    def shard(pairs: Sequence[list[str]], failures: Sequence[tuple[str, str]]
              ) -> tuple[list[list[str]], list[tuple[str, str]]]:
        """This controller's share (--shard I/N); shard 1 reports the leftovers."""
        mine, _ = shard_pairs(pairs, [], job.options.shard)
        keep = job.options.shard is None or job.options.shard.owns_leftovers()
        return mine, list(failures) if keep else []

    def plan_rounds(pairs: Sequence[list[str]], extra_lines: Sequence[str]) -> Plan:
        return plan_for_job(job, pairs, extra_lines, lambda ms: form_ntuples(ms)[0])

    utils = types.SimpleNamespace(form_ntuples_from_machines=form_ntuples, shard=shard,
                                  plan_rounds=plan_rounds)
    error = types.SimpleNamespace(**ERRORS)
    subcommand = types.SimpleNamespace(parallel_simple=job.parallel_simple)
    autotest_remote = types.SimpleNamespace(host_id=host_id)
    ns: dict[str, Any] = {
        "__name__": "__main__", "job": job, "machines": list(job.machines),
        "args": list(job.args), "hosts": hosts, "utils": utils, "error": error,
        "subcommand": subcommand, "autotest_remote": autotest_remote,
        "parallel_simple": job.parallel_simple, "host_id": host_id,
    }
    ns.update(ERRORS)
    return ns
