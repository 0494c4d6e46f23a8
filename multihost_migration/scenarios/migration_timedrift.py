"""Guest clock against host clock across ping-pong migrations (variant `timedrift`).

The guest's wall clock is read (busybox `adjtimex`: seconds and
microseconds) on the serial console while the host running the guest reads
its own clock before and after the command; the sample pairs the guest's
time with the middle of that round trip, whose half is the sample's error.
Each look takes TRIES samples and keeps the one with the shortest round
trip.  Looks: on the source before the first migration, then on the
destination after each of `migrate_count` (default 4) ping-pong migrations.
The hosts exchange their looks at the end and each one computes

    drift = (guest_last - guest_first) - (host_last - host_first)

(negative: the guest clock fell behind).  The scenario FAILs when |drift|
exceeds `timedrift_limit` seconds, default 2.0.  Why 2 s: under TCG the
guest clock stops while the guest is paused for the switchover and nothing
in the guest corrects it (no NTP), so every migration legitimately costs the
guest about its pause: QEMU's downtime plus the destination's start, 0.03-0.3
s each here.  Four migrations drifted -0.3 to -0.8 s on the shared 2-core
machine (looks ±0.09 s each), so 2 s leaves room for a loaded machine, while
the faults this is for (the guest clock jumping, or running at a wrong rate
after a migration) show as seconds.  The drift, its error bound and every
look are logged and written to timedrift.json in the host's result
directory.

Host clocks: each look uses the clock of the host the guest runs on, so the
hosts' clocks must agree (the same clock in the lab; NTP on real hosts).

`timedrift_step = S` (negative test) steps the guest clock S seconds forward
with `date -s` after the look that follows migration `timedrift_step_after`
(default: the middle one); the drift then measures about S and the scenario
FAILs with it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, NamedTuple, Sequence

from multihost_migration.errors import GuestCheckError
from multihost_migration.guest.console import ConsoleSession
from multihost_migration.migration import MigrationData, MultihostMigration
from multihost_migration.params import Params
from multihost_migration.qemu.env import Env
from multihost_migration.verdicts import TestFail

log = logging.getLogger(__name__)

TRIES = 3
DEFAULT_LIMIT = 2.0
_SEC = re.compile(r"time\.tv_sec:\s*(\d+)")
_USEC = re.compile(r"time\.tv_usec:\s*(\d+)")


class ClockSample(NamedTuple):
    """The guest's clock next to the clock of the host it runs on."""

    host: str
    label: str
    host_time: float     # host epoch seconds, middle of the round trip
    guest_time: float    # guest epoch seconds
    error: float         # half the round trip: the sample's uncertainty

    @property
    def offset(self) -> float:
        return self.guest_time - self.host_time


class Drift(NamedTuple):
    drift: float          # guest elapsed minus host elapsed
    error: float          # bound of the measurement error
    host_elapsed: float
    guest_elapsed: float


def parse_adjtimex(output: str) -> float:
    """Guest epoch seconds from busybox `adjtimex` output."""
    sec, usec = _SEC.search(output), _USEC.search(output)
    if sec is None or usec is None:
        raise GuestCheckError(f"adjtimex: no time.tv_sec/time.tv_usec in {output!r}")
    return int(sec.group(1)) + int(usec.group(1)) / 1e6


def measure(session: ConsoleSession, host: str, label: str,
            tries: int = TRIES) -> ClockSample:
    """The best (shortest round trip) of `tries` samples."""
    best = None
    for _ in range(tries):
        before = time.time()
        output = session.cmd("adjtimex")
        after = time.time()
        sample = ClockSample(host, label, (before + after) / 2, parse_adjtimex(output),
                             (after - before) / 2)
        if best is None or sample.error < best.error:
            best = sample
    assert best is not None
    return best


def clock_drift(first: ClockSample, last: ClockSample) -> Drift:
    host = last.host_time - first.host_time
    guest = last.guest_time - first.guest_time
    return Drift(guest - host, first.error + last.error, host, guest)


def looks_report(samples: Sequence[ClockSample]) -> str:
    """Each look's offset relative to the first: where the drift came from."""
    base = samples[0].offset
    return "; ".join(f"{s.label} on {s.host}: {s.offset - base:+.3f} s (±{s.error:.3f})"
                     for s in samples)


def drift_problem(vm: str, samples: Sequence[ClockSample], migrations: int,
                  limit: float) -> tuple[Drift, str]:
    """The drift between the first and last looks, and why it fails the
    limit ("" if it does not)."""
    if len(samples) < 2:
        raise GuestCheckError(f"{vm}: {len(samples)} clock look(s), need two")
    ordered = sorted(samples, key=lambda s: s.host_time)
    drift = clock_drift(ordered[0], ordered[-1])
    if abs(drift.drift) <= limit:
        return drift, ""
    return drift, (f"{vm}: guest clock drifted {drift.drift:+.3f} s (±{drift.error:.3f}) "
                   f"from the host clock over {migrations} migration(s) and "
                   f"{drift.host_elapsed:.1f} s of host time, more than timedrift_limit = "
                   f"{limit:g} s; looks: {looks_report(ordered)}")


class TimedriftMigration(MultihostMigration):
    def __init__(self, test: Any, params: Params, env: Env) -> None:
        super().__init__(test, params, env)
        self.rounds = params.get_int("migrate_count", 4)
        self.limit = params.get_float("timedrift_limit", DEFAULT_LIMIT)
        self.step = params.get_float("timedrift_step", 0.0)
        self.step_after = params.get_int("timedrift_step_after", max(1, self.rounds // 2))
        self.samples: dict[str, list[ClockSample]] = {}

    def _look(self, name: str, label: str) -> ConsoleSession:
        vm = self.env.get_vm(name)
        if vm is None:
            raise GuestCheckError(f"{name} is not running on {self.hostid}")
        session = vm.wait_for_login(timeout=self.login_timeout)
        sample = measure(session, self.hostid, label)
        self.samples.setdefault(name, []).append(sample)
        log.info("%s on %s, %s: guest clock %+.3f s from the host's (±%.3f)", name,
                 self.hostid, label, sample.offset, sample.error)
        return session

    def start_work(self, mig_data: MigrationData) -> None:
        for name in mig_data.vms_name:
            self._look(name, f"before {mig_data.mig_id}")

    def check_work(self, mig_data: MigrationData) -> None:
        index = int(mig_data.params.get("timedrift_round", "0"))
        for name in mig_data.vms_name:
            session = self._look(name, f"after {mig_data.mig_id}")
            if self.step and index == self.step_after:
                session.cmd(f"date -s @$(( $(date +%s) + {int(self.step)} ))")
                log.warning("%s on %s after %s: guest clock stepped %+d s on purpose "
                            "(timedrift_step)", name, self.hostid, mig_data.mig_id,
                            int(self.step))

    def migration_scenario(self) -> None:
        first, second = self.hosts[0], self.hosts[1]
        for index in range(self.rounds):
            src, dst = (first, second) if index % 2 == 0 else (second, first)
            self.migrate_wait(self.vms, src, dst, self.start_work if index == 0 else None,
                              self.check_work, params_append={"timedrift_round": str(index + 1)})
        mine = {name: [s._asdict() for s in samples] for name, samples in self.samples.items()}
        views = self.sync(mine, tag="timedrift-looks")
        problems, report = [], {}
        for name in self.vms:
            samples = [ClockSample(**s) for view in views.values() for s in view.get(name, [])]
            drift, problem = drift_problem(name, samples, self.rounds, self.limit)
            log.info("%s: guest clock drift %+.3f s (±%.3f) over %d migration(s), %.1f s "
                     "host time; limit %g s", name, drift.drift, drift.error, self.rounds,
                     drift.host_elapsed, self.limit)
            report[name] = {"drift": drift._asdict(), "limit": self.limit,
                            "migrations": self.rounds,
                            "looks": [s._asdict() for s in
                                      sorted(samples, key=lambda s: s.host_time)]}
            if problem:
                problems.append(problem)
        (self.outputdir / "timedrift.json").write_text(json.dumps(report, indent=1))
        if problems:
            raise TestFail("; ".join(problems))


def run(test: Any, params: Params, env: Env) -> None:
    TimedriftMigration(test, params, env).run()
