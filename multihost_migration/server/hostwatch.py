"""The controller as the relay of last resort, and its watch on each host.

The controller reaches every host over SSH even when the hosts cannot reach
each other.  For one test on a group of hosts:

- `Relay`: when a host's client job reports a failing verdict (its status
  line, as it streams in), the other hosts' client jobs get one relay line
  on their standard input at once (relay.py), so that they stop "because h1
  failed: ..." instead of waiting out a sync deadline.
- `HostWatch`: a host that shows no sign of life (no output, no answer to
  an SSH keepalive request) for `unresponsive_timeout` seconds is declared
  unresponsive: its verdict is ERROR "host h2 unresponsive since <time>
  (last phase: ...)", the others are told, its connection is dropped, and
  what it may have left is listed (`left_behind`) for the results; the next
  job's `sweep_stale_workdirs` on that host removes it.
"""

from __future__ import annotations

import logging
import queue
import shlex
import threading
import time
from typing import Callable, Optional

from multihost_migration import relay
from multihost_migration.remote import RemoteHost
from multihost_migration.status import parse

log = logging.getLogger(__name__)

FAILING = frozenset({"FAIL", "ERROR"})
DEFAULT_UNRESPONSIVE_TIMEOUT = 30.0
DEFAULT_STALE_WORKDIR_AGE = 30
PING_INTERVAL = 5.0


class Relay:
    """Relay lines for the client jobs of one test, one outbox per host."""

    def __init__(self, hosts: list[str]) -> None:
        self.outboxes: dict[str, "queue.SimpleQueue[str]"] = {
            h: queue.SimpleQueue() for h in hosts}
        self._told: set[str] = set()
        self._lock = threading.Lock()

    def report(self, report: relay.PeerReport) -> None:
        """Tell every other host, once per reporting host."""
        with self._lock:
            if report.host in self._told:
                return
            self._told.add(report.host)
        log.warning("relaying to the other hosts: %s", report.describe())
        for host, box in self.outboxes.items():
            if host != report.host:
                box.put(report.encode())

    def watch_line(self, host: str, status_line: str) -> None:
        """A status line of `host`'s client job: relay its failing verdict."""
        for entry in parse(status_line):
            if entry.indent == 1 and entry.status in FAILING:
                self.report(relay.PeerReport("failed", host, entry.status, entry.reason))


class HostWatch:
    """Watches one host while its client job runs (a daemon thread)."""

    def __init__(self, host: str, remote: RemoteHost, timeout: float,
                 on_unresponsive: Callable[[str], None],
                 phase: Callable[[], str] = lambda: "unknown") -> None:
        self.host = host
        self.remote = remote
        self.timeout = timeout
        self.on_unresponsive = on_unresponsive
        self.phase = phase
        self.declared: Optional[str] = None     # the reason, once unresponsive
        self._last_sign = time.monotonic()
        self._last_sign_wall = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{host}", daemon=True)

    def sign_of_life(self) -> None:
        """Output arrived from the host."""
        self._last_sign, self._last_sign_wall = time.monotonic(), time.time()

    def __enter__(self) -> "HostWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(PING_INTERVAL + self.timeout)

    def _run(self) -> None:
        while not self._stop.wait(PING_INTERVAL):
            if self.remote.ping(timeout=min(PING_INTERVAL * 2, self.timeout)):
                self.sign_of_life()
                continue
            silent = time.monotonic() - self._last_sign
            if silent >= self.timeout and not self._stop.is_set():
                since = time.strftime("%H:%M:%S", time.localtime(self._last_sign_wall))
                self.declared = (f"host {self.host} unresponsive since {since} (last phase: "
                                 f"{self.phase()}): no output and no answer to SSH keepalive "
                                 f"requests for {silent:.0f} s")
                log.error("%s", self.declared)
                self.on_unresponsive(self.declared)
                return


def left_behind(host: str, workdir: str) -> list[str]:
    """What a job on an unresponsive host may have left there (not cleaned)."""
    return [f"{host}:{workdir} (the job's directory)",
            f"{host}: the processes naming {workdir}/ on their command line "
            "(client job, QEMU)",
            f"{host}: the job's disks and TLS credentials on its images directory, "
            "if it was the master"]


def sweep_stale_workdirs(remote: RemoteHost, host: str,
                         min_age_s: int = DEFAULT_STALE_WORKDIR_AGE) -> list[str]:
    """Remove what earlier jobs left on `host`: workdirs of this host whose job
    is gone (its lock is free) and older than `min_age_s`, with the processes
    that still name them.  Returns the directories removed."""
    pattern = f"/tmp/mhm-*-{host}.????????"
    # Age from params.json (written once, when the job started), else the
    # directory: a job that is only starting (no lock yet) is never taken.
    script = (
        f"now=$(date +%s); for d in {pattern}; do [ -d \"$d\" ] || continue; "
        "ref=\"$d/params.json\"; [ -e \"$ref\" ] || ref=\"$d\"; "
        f"[ $((now - $(stat -c %Y \"$ref\"))) -ge {int(min_age_s)} ] || continue; "
        "flock -n \"$d/lock\" true 2>/dev/null || continue; "
        "pkill -KILL -f \"[${d%${d#?}}]${d#?}/\"; rm -rf -- \"$d\" && echo \"$d\"; done; true")
    result = remote.run(f"sh -c {shlex.quote(script)}", timeout=60, check=False)
    removed = [line for line in result.stdout.split() if line.startswith("/tmp/mhm-")]
    if removed:
        log.warning("%s: removed what earlier jobs left: %s", host, " ".join(removed))
    return removed
