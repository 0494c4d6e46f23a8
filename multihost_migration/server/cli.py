"""autotest-remote: run a server control file against a set of machines.

    autotest-remote -m host1,host2 [-r RESULTS] [options] control.srv [ARGS...]
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, Optional

from multihost_migration.errors import ConfigError, MigrationTestError
from multihost_migration.remote import default_known_hosts
from multihost_migration.report.model import redact_args
from multihost_migration.server.control_env import AutoservError, namespace
from multihost_migration.server.inventory import pool_from_args, ssh_target
from multihost_migration.server.job import JobOptions, ServerJob
from multihost_migration.server.sharding import Shard, job_identity
from multihost_migration.status import parse
from multihost_migration.verdicts import exit_status, reason_of, status_of

log = logging.getLogger("autotest-remote")

SSH_PASS_ENV = "MHM_SSH_PASS"  # the SSH password, kept off the command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autotest-remote", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--machines", default="",
                   help="machines, comma or space separated ([user@]host[:port])")
    p.add_argument("-M", "--machines-file", type=Path,
                   help="machines file (one machine per line, # comments) or an "
                        "Ansible YAML inventory")
    p.add_argument("--topology", type=Path, default=None,
                   help="tmt topology file (default: $TMT_TOPOLOGY_YAML when no "
                        "machines are given otherwise)")
    p.add_argument("--shard", type=Shard.parse, default=None, metavar="I/N",
                   help="run this controller's 1/N of the host pairs (merge the "
                        "shards' results with mhm-report merge)")
    p.add_argument("-r", "--results", type=Path, help="results directory "
                   "(default: results/<timestamp>)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow writing into an existing results directory")
    p.add_argument("-a", "--args", default="", help="arguments for the control file")
    p.add_argument("--ssh-user", default="root")
    p.add_argument("--ssh-port", type=int, default=22)
    p.add_argument("--ssh-pass", default=None,
                   help=f"SSH password (visible in ps: prefer ${SSH_PASS_ENV} or --ssh-pass-file)")
    p.add_argument("--ssh-pass-file", type=Path, default=None,
                   help="file whose first line is the SSH password")
    p.add_argument("--ssh-key", default=None, help="private key file")
    p.add_argument("--known-hosts", default=None,
                   help="known_hosts file to verify host keys (default ~/.ssh/known_hosts)")
    p.add_argument("--accept-unknown-host-keys", action="store_true",
                   help="connect to hosts whose key is not in known_hosts")
    p.add_argument("--remote-python", default=None,
                   help="python on the hosts that has this suite; by default the suite "
                        "is installed on each host (a versioned virtualenv from a "
                        "wheelhouse sent over SSH: hosts need no network)")
    p.add_argument("--cfg", type=Path, default=None, help="test cfg (default "
                   "cfg/multi-host-tests.cfg)")
    p.add_argument("--verbose", action="store_true", help="show the hosts' log lines")
    p.add_argument("-s", "--server", action="store_true",
                   help="the control file is a server control file (the default)")
    p.add_argument("-c", "--client", action="store_true",
                   help="client control files are not supported: refused")
    p.add_argument("-v", "--verify", action="store_true",
                   help="only run the preflight checks on the machines")
    p.add_argument("--list", action="store_true",
                   help="print the tests the cfg selects and their key params; "
                        "touch no host")
    p.add_argument("control", type=Path, help="server control file")
    p.add_argument("control_args", nargs=argparse.REMAINDER,
                   help="arguments for the control file")
    return p


def parse_machines(text: str, machines_file: Optional[Path],
                   topology: Optional[Path] = None) -> list[str]:
    """-m, -M (plain or Ansible YAML) and the tmt topology, as host specs."""
    return sorted(pool_from_args(text, machines_file, topology).machines())


def ssh_password(option: Optional[str], path: Optional[Path]) -> Optional[str]:
    """--ssh-pass, else the first line of --ssh-pass-file, else $MHM_SSH_PASS."""
    if option is not None and path is not None:
        raise ConfigError("give --ssh-pass or --ssh-pass-file, not both")
    if path is None:
        return option if option is not None else os.environ.get(SSH_PASS_ENV)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--ssh-pass-file {path}: cannot read: {err}") from err
    if not lines or not lines[0]:
        raise ConfigError(f"--ssh-pass-file {path}: empty first line")
    if path.stat().st_mode & 0o077:
        log.warning("--ssh-pass-file %s can be read by others (chmod 600 it)", path)
    return lines[0]


def _remote_python(value: Optional[str]) -> Optional[str]:
    """--remote-python: a path (it is run by the hosts' shells), nothing more."""
    if value is not None and not re.fullmatch(r"[\w@%+=:,./-]+", value):
        raise ConfigError(f"--remote-python {value!r}: a path to a python is expected "
                          "(letters, digits, _@%+=:,./-; no spaces or shell characters)")
    return value


def options_from(args: argparse.Namespace) -> JobOptions:
    if not args.control.is_file():
        raise ConfigError(f"control file {args.control} not found")
    pool = pool_from_args(args.machines, args.machines_file, args.topology)
    machines = sorted(pool.machines())
    if args.results is None:
        resultdir = new_results_dir(Path("results"))
    else:
        resultdir = args.results
        if resultdir.exists() and any(resultdir.iterdir()) and not args.overwrite:
            raise ConfigError(f"results directory {resultdir} exists and is not empty; "
                              "pass --overwrite or choose another -r")
    for option, path in (("--ssh-key", args.ssh_key), ("--known-hosts", args.known_hosts)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{option} {path}: no such file")
    control_args = args.args.split() + [a for a in args.control_args if a != "--"]
    ssh = {"user": args.ssh_user, "port": args.ssh_port, "key_filename": args.ssh_key,
           "password": ssh_password(args.ssh_pass, args.ssh_pass_file),
           "known_hosts": args.known_hosts or default_known_hosts(),
           "accept_unknown_host_key": args.accept_unknown_host_keys}
    return JobOptions(resultdir=resultdir.resolve(), control=args.control.resolve(),
                      machines=machines, args=control_args, ssh_defaults=ssh,
                      remote_python=_remote_python(args.remote_python), verbose=args.verbose,
                      cfg=args.cfg.resolve() if args.cfg else None, pool=pool,
                      shard=args.shard, identity=job_identity(
                          args.control, args.cfg,
                          redact_args(control_args), pool.identity()))


def new_results_dir(root: Path, now: Optional[datetime.datetime] = None) -> Path:
    """A fresh results/<timestamp>[.N] directory, created here (atomically, so
    two runs started in the same second never share one); results/latest
    points at it."""
    stamp = (now or datetime.datetime.now()).strftime("%Y-%m-%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        candidate = root / (stamp if n == 1 else f"{stamp}.{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        _point_latest(root, candidate.name)
        return candidate
    raise ConfigError(f"{root}: 999 results directories named {stamp}*; pass -r")


def _point_latest(root: Path, name: str) -> None:
    """Replace results/latest with a link to `name`, atomically."""
    tmp = root / f".latest.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(name)
        os.replace(tmp, root / "latest")
    except OSError as err:   # a link is a convenience, the results are what matter
        log.warning("could not point %s/latest at %s: %s", root, name, err)


def _write_keyval(path: Path, values: dict[str, Any]) -> None:
    with open(path, "a") as f:
        for key, value in values.items():
            f.write(f"{key}={value}\n")


def _setup_logging(resultdir: Path, verbose: bool) -> None:
    debug = resultdir / "debug"
    debug.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    fmt = logging.Formatter("%(asctime)s %(levelname)-5s %(threadName)s %(name)s| %(message)s")
    for level, name in ((logging.DEBUG, "autoserv.DEBUG"), (logging.INFO, "autoserv.INFO")):
        handler = logging.FileHandler(debug / name)
        handler.setLevel(level)
        handler.setFormatter(fmt)
        root.addHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(console)
    logging.getLogger("paramiko").setLevel(logging.WARNING)


LIST_KEYS = ("type", "vms", "mem", "accel", "migration_protocol", "migration_capabilities",
             "migrate_count", "image_name")


def list_tests(options: JobOptions) -> int:
    from multihost_migration.server.control_env import extra_cfg_lines
    from multihost_migration.server.selection import default_cfg, select_tests
    tests = select_tests(options.cfg or default_cfg(options.control), extra_cfg_lines(options.args))
    for test in tests:
        keys = " ".join(f"{k}={test[k]}" for k in LIST_KEYS if test.get(k) not in (None, ""))
        print(f"{test['shortname']}\t{keys}")
    print(f"{len(tests)} test(s) selected")
    return 0


def verify(options: JobOptions) -> int:
    from multihost_migration.server.control_env import extra_cfg_lines
    from multihost_migration.server.dispatch import resolve
    from multihost_migration.server.selection import default_cfg, select_tests
    from multihost_migration.server.preflight import Preflight
    if not options.machines:
        raise ConfigError("-v needs machines: give them with -m or -M")
    test = select_tests(options.cfg or default_cfg(options.control),
                        extra_cfg_lines(options.args))[0]
    targets = {}
    for machine in options.machines:
        target = ssh_target(machine, options.ssh_defaults, options.pool)
        targets[target.hostname] = target
    addresses = {h: resolve(t.connect_address) for h, t in targets.items()}
    checks = Preflight(targets, test, options.remote_python or "python3", addresses)
    for check in checks.run():
        print(check.line())
    print("preflight: " + ("all checks passed" if not checks.failures else
                           f"{len(checks.failures)} check(s) failed"))
    return 0 if not checks.failures else 1


def run_job(options: JobOptions) -> int:
    options.resultdir.mkdir(parents=True, exist_ok=True)
    _setup_logging(options.resultdir, options.verbose)
    job = ServerJob(options)
    started = time.time()
    _write_keyval(options.resultdir / "keyval", {
        "job_started": int(started), "user": getpass.getuser(),
        "drone": socket.gethostname(), "machines": ",".join(options.machines),
        "control": options.control})
    (options.resultdir / "control.srv").write_text(options.control.read_text())
    code = compile(options.control.read_text(), str(options.control), "exec")
    _handle_signals(job)
    with job.status.group(None, None):
        try:
            exec(code, namespace(job))  # the control file is the user's own program
        except Exception as err:  # the control file is a program: report, don't crash
            status = "ERROR" if isinstance(err, AutoservError) else status_of(err)
            log.debug("control file failed", exc_info=True)
            job.record_setup_failure("control file", "", options.machines,
                                     f"{options.control.name}: {reason_of(err)}", status=status)
    _write_keyval(options.resultdir / "keyval", {"job_finished": int(time.time())})
    (options.resultdir / "results.json").write_text(json.dumps(
        {"job": {"machines": options.machines, "started": started, "finished": time.time(),
                 "control": str(options.control), "args": list(redact_args(options.args)),
                 "identity": options.identity,
                 "shard": str(options.shard) if options.shard else None},
         "tests": job.tests}, indent=1))
    _write_reports(options.resultdir)
    final = parse((options.resultdir / "status.log").read_text())[-1].status
    verdict = final.replace("END ", "")
    job.progress.summary(job.tests)
    print(f"\nresults: {options.resultdir}\nverdict: {verdict}", flush=True)
    if job.tests and all(t.get("status") == "TEST_NA" for t in job.tests):
        print("nothing ran: every test was TEST_NA (see the reasons above)", flush=True)
    return exit_status(verdict)


def _handle_signals(job: ServerJob) -> None:
    """First SIGINT/SIGTERM: every client job gets Ctrl-C and cleans up (its
    QEMUs, its sync server), the results come back and say ABORT.  A second
    signal stops waiting for them."""
    def handler(signum: int, frame: object) -> None:
        if job.abort_event.is_set():
            raise KeyboardInterrupt
        job.abort_event.set()
        print(f"\nautotest-remote: {signal.Signals(signum).name}: stopping the client jobs "
              "(again to give up waiting)", file=sys.stderr, flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def _write_reports(resultdir: Path) -> None:
    """junit.xml and report.html; a report failure never hides the verdict."""
    from multihost_migration.report.html import write_html
    from multihost_migration.report.junit import write_junit
    for writer in (write_junit, write_html):
        try:
            writer(resultdir)
        except Exception as err:  # the run's results matter more than its report
            log.error("could not write a report (%s): %s", writer.__name__, err)


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.client:
            raise ConfigError("client control files (-c) are not supported: "
                              "multihost_migration runs server control files")
        options = options_from(args)
        if args.list:
            return list_tests(options)
        if args.verify:
            return verify(options)
        return run_job(options)
    except (MigrationTestError, AutoservError) as err:
        print(f"autotest-remote: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autotest-remote: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
