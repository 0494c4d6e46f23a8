"""Server side of one Cartesian test: per-host params, client jobs, results.

For every test dict the cfg selects, on a group of hosts:

1. build each host's params: the dict, `hosts` (host ids = machine names as
   given), `hostid`, `address_<hostid>` (resolved here), the sync server
   (master = hosts[0], a port, a fresh per-test secret), `job_id`, and the
   per-host overrides `key_host1`, `key_host2` ... (by position);
2. on every host at once, over SSH: upload the params (SFTP, mode 0600),
   run `python -m multihost_migration.client`, stream its status lines;
3. copy each host's result directory back, embed its status.log lines;
4. the test's verdict is the worst of the hosts', with each host's reason.

Meanwhile the controller is the relay of last resort (server/hostwatch.py):
a host's failing verdict goes to the other hosts' client jobs at once, and a
host that stops answering is declared unresponsive (ERROR) instead of being
waited for until the test timeout.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import shlex
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from multihost_migration import relay
from multihost_migration.errors import MigrationTestError, RemoteError
from multihost_migration.imagespec import images_dir
from multihost_migration.params import Params
from multihost_migration.remote import CommandResult, RemoteHost, SshTarget
from multihost_migration.report.progress import Progress
from multihost_migration.results_format import (MIGRATIONS_FILE, PROGRESS_PREFIX,
                                                STATUS_PREFIX, redact, source_records)
from multihost_migration.server.hostwatch import (DEFAULT_STALE_WORKDIR_AGE,
                                                  DEFAULT_UNRESPONSIVE_TIMEOUT, HostWatch, Relay,
                                                  left_behind, sweep_stale_workdirs)
from multihost_migration.server.install import make_workdir
from multihost_migration.server.shipping import scenario_targets, ship_scenarios
# The cfg selection lives in selection.py; these names stay importable from
# here for the callers that still look for them here (server/cli.py).
from multihost_migration.server.selection import default_cfg as default_cfg
from multihost_migration.server.selection import select_tests as select_tests
from multihost_migration.status import SEVERITY, StatusLog, close_open_groups, parse, worst

log = logging.getLogger(__name__)

DEFAULT_TEST_TIMEOUT = 1800.0
# After test_timeout, how long a host's thread may still copy results back and
# clean up (bounded SFTP, kill, rm) before the controller stops waiting for it.
JOIN_GRACE = 900.0



@dataclass
class HostOutcome:
    host: str
    status: str = "ERROR"
    reason: str = "client job did not report"
    status_lines: Optional[list[str]] = None
    duration: float = 0.0
    left_behind: list[str] = field(default_factory=list)   # on an unresponsive host
    swept: list[str] = field(default_factory=list)          # earlier jobs' leftovers removed


def resolve(machine: str) -> str:
    """The address peers use for `machine` (hosts may be given by name)."""
    try:
        infos = socket.getaddrinfo(machine, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise RemoteError(f"cannot resolve host {machine!r}: {err.strerror}") from err
    return str(infos[0][4][0])


def host_params(test: dict[str, Any], hosts: Sequence[str], addresses: dict[str, str],
                secret: str, sync_port: int, job_id: str) -> dict[str, Params]:
    """The params each host's client job receives."""
    base = Params(test)
    out = {}
    for index, host in enumerate(hosts):
        params = base.object_params(f"host{index + 1}")
        params.update({
            "hosts": list(hosts), "hostid": host, "job_id": job_id,
            "sync_secret": secret, "sync_port": str(sync_port),
        })
        for h, addr in addresses.items():
            params[f"address_{h}"] = addr
        out[host] = params
    return out


class CfgTestRunner:
    """Runs the tests a cfg selects on one group of hosts."""

    def __init__(self, status: StatusLog, outputdir: Path,
                 targets: dict[str, SshTarget], remote_python: str = "python3",
                 verbose: bool = False, cancel: Optional[threading.Event] = None,
                 progress: Optional[Progress] = None, group: str = "") -> None:
        self.status = status
        self.outputdir = outputdir
        self.targets = targets
        self.hosts = list(targets)
        self.remote_python = remote_python
        self.verbose = verbose
        self.cancel = cancel or threading.Event()
        self.progress = progress or Progress(sys.stdout, False)
        self.group = group
        self._phases: dict[str, str] = {}          # host -> its last phase, for verdicts
        self._relay = Relay(self.hosts)            # replaced per test

    def run(self, test: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """Run one test dict on all hosts; returns (status, reason, summary)."""
        name = str(test.get("shortname") or test.get("name"))
        testdir = self.outputdir / name
        testdir.mkdir(parents=True, exist_ok=True)
        job_id = f"{name}-{secrets.token_hex(4)}"
        addresses = {h: resolve(self.targets[h].connect_address) for h in self.hosts}
        port = int(test.get("sync_port") or random.randint(20000, 29999))
        params = host_params(test, self.hosts, addresses, secrets.token_hex(32), port, job_id)
        (testdir / "params.json").write_text(json.dumps(
            {h: redact(dict(p)) for h, p in params.items()}, indent=1, sort_keys=True))
        timeout = float(test.get("test_timeout") or DEFAULT_TEST_TIMEOUT)
        self._relay = Relay(self.hosts)
        outcomes = {h: HostOutcome(h) for h in self.hosts}
        threads = [threading.Thread(target=self._run_host, name=f"client-{h}", daemon=True,
                                    args=(h, params[h], testdir / h, timeout, outcomes[h]))
                   for h in self.hosts]
        start = time.monotonic()
        for t in threads:
            t.start()
        # Bounded: a host whose thread outlives its test timeout (a call stuck
        # on a frozen host) is reported, not waited for (its thread is a daemon).
        join_deadline = start + timeout + JOIN_GRACE
        for host, t in zip(self.hosts, threads):
            t.join(max(join_deadline - time.monotonic(), 0.0))
            if t.is_alive():
                log.error("%s: client thread still running %.0f s after the test "
                          "timeout; not waiting for it", host, JOIN_GRACE)
                outcomes[host] = HostOutcome(host, "ERROR", (
                    f"host {host} did not finish within test_timeout {timeout:g} s "
                    f"+ {JOIN_GRACE:g} s; not waited for"))
        with self.status.group(name, name):
            for host in self.hosts:
                lines = outcomes[host].status_lines
                if lines:
                    self.status.record_raw(lines, 0)
                else:
                    self.status.record(outcomes[host].status, f"{name}/{host}", host,
                                       outcomes[host].reason)
            verdict = worst(*(o.status for o in outcomes.values()))
            bad = [f"{o.host}: {o.reason}" for o in outcomes.values() if o.status != "GOOD"]
            reason = "; ".join(bad) if bad else "completed successfully"
            self.status.record(verdict, name, name, reason,
                               fields={"duration": f"{time.monotonic() - start:.1f}"})
        self.progress.message(f"{verdict:<6} {name} on {','.join(self.hosts)}"
                              + ("" if verdict == "GOOD" else f": {reason[:500]}"))
        summary = {"name": name, "hosts": self.hosts, "status": verdict, "reason": reason,
                   "duration": round(time.monotonic() - start, 3),
                   "logdir": str(testdir), "params": redact(dict(Params(test))),
                   "host_results": {h: {"status": o.status, "reason": o.reason,
                                        **({"left_behind": o.left_behind} if o.left_behind
                                           else {}),
                                        **({"swept": o.swept} if o.swept else {})}
                                    for h, o in outcomes.items()},
                   "migrations": _migrations(testdir, self.hosts)}
        return verdict, reason, summary

    def _run_host(self, host: str, params: Params, localdir: Path, timeout: float,
                  outcome: HostOutcome) -> None:
        start = time.monotonic()
        try:
            self._run_client(host, params, localdir, timeout, outcome)
        except MigrationTestError as err:
            outcome.status, outcome.reason = "ERROR", str(err)
        except Exception as err:
            log.exception("client on %s", host)
            outcome.status, outcome.reason = "ERROR", f"{type(err).__name__}: {err}"
        finally:
            outcome.duration = time.monotonic() - start
            self.progress.phase(self.group, host, f"done: {outcome.status} "
                                                  f"({outcome.duration:.1f} s)")

    def _on_progress(self, host: str, text: str) -> None:
        """`phase<TAB>detail` or `migrating<TAB>vm<TAB>percent<TAB>mbps`."""
        fields = text.split("\t")
        self._phases[host] = " ".join(fields)
        try:
            if fields[0] == "migrating" and len(fields) == 4:
                mbps = float(fields[3]) if fields[3] else None
                self.progress.migration(self.group, host, fields[1], float(fields[2]), mbps)
                return
        except ValueError:
            pass
        self.progress.phase(self.group, host, " ".join(fields))

    def _run_client(self, host: str, params: Params, localdir: Path, timeout: float,
                    outcome: HostOutcome) -> None:
        localdir.mkdir(parents=True, exist_ok=True)
        with RemoteHost(self.targets[host]) as remote:
            outcome.swept = sweep_stale_workdirs(remote, host, params.get_int(
                "stale_workdir_age", DEFAULT_STALE_WORKDIR_AGE))
            # Per host: in the lab all hosts share one PID space, and the leftover
            # sweep below must only ever match this host's processes.  Fresh and
            # private (mktemp -d, 0700): never a directory someone made before.
            workdir = make_workdir(remote, f"mhm-{params['job_id']}-{host}")
            params = _upload_params(remote, params, workdir)
            lines: list[str] = []
            watch = HostWatch(host, remote, params.get_float(
                "host_unresponsive_timeout", DEFAULT_UNRESPONSIVE_TIMEOUT),
                on_unresponsive=lambda why: self._unresponsive(host, remote, why),
                phase=lambda: self._phases.get(host, "starting"))
            result: Optional[CommandResult] = None
            try:
                with watch:
                    result = self._client_job(remote, host, workdir, timeout, localdir,
                                              lines, watch)
            except Exception:
                if watch.declared is None:
                    raise        # else: the connection was dropped on purpose
            finally:
                if watch.declared is None:
                    self._clean_host(remote, host, params, workdir, localdir)
        if watch.declared is not None or result is None:
            outcome.status = "ERROR"
            outcome.reason = watch.declared or "client job did not report"
            outcome.left_behind = left_behind(host, workdir)
            (localdir / "LEFT_BEHIND.txt").write_text("\n".join(outcome.left_behind) + "\n")
            return
        _judge(host, localdir, lines, result, outcome)

    def _client_job(self, remote: RemoteHost, host: str, workdir: str, timeout: float,
                    localdir: Path, lines: list[str], watch: HostWatch) -> CommandResult:
        """Run the client job, streaming its status and progress lines; its
        failing verdict is relayed to the other hosts as it arrives."""
        console = open(localdir / "client.console.log", "w")

        def on_line(line: str) -> None:
            watch.sign_of_life()
            console.write(line + "\n")
            console.flush()
            if line.startswith(STATUS_PREFIX):
                lines.append(line[len(STATUS_PREFIX):])
                self._relay.watch_line(host, line[len(STATUS_PREFIX):])
            elif line.startswith(PROGRESS_PREFIX):
                self._on_progress(host, line[len(PROGRESS_PREFIX):])
            elif self.verbose:
                self.progress.message(f"[{host}] {line}")

        cmd = (f"cd {shlex.quote(workdir)} && exec {shlex.quote(self.remote_python)} -m "
               f"multihost_migration.client --params params.json "
               f"--resultsdir {shlex.quote(workdir + '/results')}")
        try:
            return remote.run(cmd, timeout=timeout, check=False, on_line=on_line,
                              get_pty=True, cancel=self.cancel,
                              outbox=self._relay.outboxes[host])
        finally:
            console.close()

    def _unresponsive(self, host: str, remote: RemoteHost, why: str) -> None:
        """HostWatch: tell the other hosts, then drop the host's connection."""
        self._relay.report(relay.PeerReport("unresponsive", host, "ERROR", why))
        self.progress.message(f"ERROR  {why}")
        remote.abandon()

    def _clean_host(self, remote: RemoteHost, host: str, params: Params, workdir: str,
                    localdir: Path) -> None:
        """The job's results back, then nothing of it left on the host."""
        try:
            remote.get_tree(f"{workdir}/results", localdir)
        except (OSError, RemoteError) as err:
            log.warning("%s: could not copy results back: %s", host, err)
        _kill_leftovers(remote, host, workdir)
        if host == self.hosts[0]:
            _sweep_shared_storage(remote, params)
        remote.run(f"rm -rf {shlex.quote(workdir)}", timeout=60, check=False)


def _judge(host: str, localdir: Path, lines: list[str], result: CommandResult,
           outcome: HostOutcome) -> None:
    """The host's verdict: its status.log's (copied back, else streamed), or
    why there is none."""
    final = _final_status(localdir / "status.log", lines)
    outcome.status_lines = (localdir / "status.log").read_text().splitlines() \
        if (localdir / "status.log").exists() else lines
    if final is None:
        # Killed from outside (a signal) is a fault during the test: FAIL;
        # exiting on its own without a verdict is the suite's fault: ERROR.
        killed = result.exit_status < 0 or result.exit_status >= 128
        how = ("was killed (no exit status: a signal)" if result.exit_status < 0 else
               f"was killed (exit status {result.exit_status})" if killed else
               f"exited {result.exit_status}")
        outcome.status = "FAIL" if killed else "ERROR"
        outcome.reason = (f"client job on {host} {how} without a verdict; "
                          f"output:\n{result.stdout[-1500:]}")
        # its status.log ends at START: close it with the verdict given here
        outcome.status_lines = close_open_groups(outcome.status_lines, outcome.status,
                                                 outcome.reason)
    else:
        outcome.status, outcome.reason = final


def _upload_params(remote: RemoteHost, params: Params, workdir: str) -> Params:
    """The host's params in WORKDIR/params.json (mode 0600), with the user's
    scenario modules beside them; returns the params as uploaded."""
    if params.get("scenario_dirs"):
        # Users' scenario modules travel with the job: hosts need no copy.
        targets = scenario_targets(params.objects("scenario_dirs"), workdir)
        params = Params(params, scenario_dirs=" ".join(targets),
                        local_scenario_dirs=params["scenario_dirs"])
    with tempfile.NamedTemporaryFile("w", suffix=".json") as tmp:
        json.dump(dict(params), tmp)
        tmp.flush()
        remote.put(Path(tmp.name), f"{workdir}/params.json")
    remote.run(f"chmod 600 {shlex.quote(workdir)}/params.json", timeout=30)
    if params.get("local_scenario_dirs"):
        ship_scenarios(remote, params.objects("local_scenario_dirs"), workdir)
    return params


def _kill_leftovers(remote: RemoteHost, host: str, workdir: str) -> None:
    """Safety net: kill what the job left on the host (a client killed with
    SIGKILL cannot stop its QEMUs).  Every process of the job names the
    workdir on its command line; the bracket keeps this shell from matching."""
    pattern = shlex.quote("[" + workdir[0] + "]" + workdir[1:] + "/")
    result = remote.run(f"pgrep -f {pattern}; pkill -KILL -f {pattern}; true",
                        timeout=30, check=False)
    pids = result.stdout.split()
    if pids:
        log.warning("%s: killed %d process(es) the client job left behind: %s",
                    host, len(pids), " ".join(pids))
        return None


def _sweep_shared_storage(remote: RemoteHost, params: Params) -> None:
    """Master host: what a killed job left on shared storage (its disks and
    TLS credentials carry the job id in their names)."""
    images = shlex.quote(images_dir(params))
    job = str(params["job_id"])
    if not job.replace(".", "").replace("-", "").replace("_", "").isalnum():
        return  # never glob with an unexpected id
    remote.run(f"cd {images} && rm -rf -- *-{job}-* mhm-tls-{job}", timeout=60, check=False)


def _final_status(path: Path, streamed: list[str]) -> Optional[tuple[str, str]]:
    text = path.read_text() if path.exists() else "\n".join(streamed)
    for entry in reversed(parse(text)):
        if entry.indent == 1 and entry.status in SEVERITY:
            return entry.status, entry.reason
    return None


def _migrations(testdir: Path, hosts: Sequence[str]) -> list[dict[str, Any]]:
    """Every migration, once, from the source host's record."""
    return [r.to_json() for r in source_records(testdir / h / MIGRATIONS_FILE for h in hosts)]
