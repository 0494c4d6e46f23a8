#!/usr/bin/env python3
"""Sync server benchmark over loopback: barrier latency p50/p99 and barriers/s.

    .venv/bin/python benchmarks/sync_bench.py                 # 2 and 64 clients
    .venv/bin/python benchmarks/sync_bench.py --clients 2 --rounds 5000

The server runs in a background thread of this process, as on the master
host.  Clients run in `--procs` worker processes (this script re-executed with
--worker, results as JSON on stdout), each host a thread with its own
SyncData, like hosts in separate processes.  `--procs 0` runs the clients as
threads of this process too (the GIL is then shared with the server: worst
case).  Latency is the time one host spends in one barrier() call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Sequence

from multihost_migration.sync import SECRET_ENV, SyncData, SyncServer, new_secret

WARMUP = 20


def run_hosts(port: int, session: str, hosts: Sequence[str], mine: Sequence[str],
              rounds: int, timeout: float) -> Dict[str, Any]:
    """Run barriers for the hosts in `mine`; {host: {"lat": [...], "elapsed": s}}."""
    out: Dict[str, Any] = {}
    errors: List[BaseException] = []

    def host_loop(host: str) -> None:
        try:
            with SyncData("127.0.0.1", host, hosts, session, port=port) as sync:
                for i in range(WARMUP):
                    sync.barrier(f"warm{i}", timeout)
                lat = []
                start = time.perf_counter()
                for i in range(rounds):
                    t0 = time.perf_counter()
                    sync.barrier(f"b{i}", timeout)
                    lat.append(time.perf_counter() - t0)
                out[host] = {"lat": lat, "elapsed": time.perf_counter() - start}
        except BaseException as err:  # reported by the caller
            errors.append(err)

    threads = [threading.Thread(target=host_loop, args=(h,), daemon=True) for h in mine]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + rounds)
    if errors:
        raise errors[0]
    return out


def worker(args: argparse.Namespace) -> None:
    hosts = args.hosts.split(",")
    mine = args.mine.split(",")
    json.dump(run_hosts(args.port, args.session, hosts, mine, args.rounds, args.timeout),
              sys.stdout)


def scenario(port: int, clients: int, rounds: int, procs: int, timeout: float) -> Dict[str, Any]:
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    session = f"bench-{clients}-{procs}-{time.monotonic_ns()}"
    hosts = [f"host{i + 1}" for i in range(clients)]
    if procs == 0:
        results = run_hosts(port, session, hosts, hosts, rounds, timeout)
    else:
        groups = [hosts[i::procs] for i in range(min(procs, clients))]
        children = [subprocess.Popen(
            [sys.executable, __file__, "--worker", "--port", str(port), "--session", session,
             "--hosts", ",".join(hosts), "--mine", ",".join(group), "--rounds", str(rounds),
             "--timeout", str(timeout)], stdout=subprocess.PIPE) for group in groups]
        results = {}
        try:
            for child in children:
                stdout, _ = child.communicate(timeout=timeout + rounds)
                if child.returncode != 0:
                    raise RuntimeError(f"bench worker exited {child.returncode}")
                results.update(json.loads(stdout))
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)
    lat = sorted(x for r in results.values() for x in r["lat"])
    slowest = max(r["elapsed"] for r in results.values())
    return {"clients": clients, "procs": procs, "rounds": rounds,
            "p50_ms": 1000 * lat[len(lat) // 2],
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "max_ms": 1000 * lat[-1], "mean_ms": 1000 * statistics.fmean(lat),
            "barriers_per_s": rounds / slowest,
            # with procs > 0: CPU of the server process only (server thread)
            "server_cpu_us_per_barrier": 1e6 * server_cpu / (rounds + WARMUP)}


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="2,64", help="comma-separated client counts")
    parser.add_argument("--rounds", type=int, default=0, help="barriers per scenario "
                        "(default: 3000 for 2 clients, 300 for more)")
    parser.add_argument("--procs", default="2", help="comma-separated worker process counts "
                        "(0 = client threads in the server process)")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--session", help=argparse.SUPPRESS)
    parser.add_argument("--hosts", help=argparse.SUPPRESS)
    parser.add_argument("--mine", help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv) or None)
    if args.worker:
        worker(args)
        return
    os.environ[SECRET_ENV] = new_secret()  # inherited by the workers, never on argv
    load = os.getloadavg()
    print(f"# {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
          flush=True)
    with SyncServer("127.0.0.1", 0, os.environ[SECRET_ENV]) as srv:
        for clients in (int(c) for c in args.clients.split(",")):
            for procs in (int(p) for p in args.procs.split(",")):
                rounds = args.rounds or (3000 if clients <= 2 else 300)
                r = scenario(srv.port, clients, rounds, procs, args.timeout)
                if args.json:
                    print(json.dumps(r), flush=True)
                else:
                    print(f"{r['clients']:3d} clients, {r['procs']} procs, {r['rounds']} "
                          f"barriers: p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
                          f"max {r['max_ms']:.2f} ms  {r['barriers_per_s']:.0f} barriers/s  "
                          f"server CPU {r['server_cpu_us_per_barrier']:.0f} us/barrier",
                          flush=True)


if __name__ == "__main__":
    main()
