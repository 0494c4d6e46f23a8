"""`mhm-report merge DIR... -o OUT`: one result directory from the shards of a job.

Shards (``autotest-remote --shard I/N``) each write a results directory
whose results.json carries the job identity (``job.identity``: a hash of
the control file, cfg, arguments and inventory) and the shard (``job.shard``).
Merging refuses directories of different jobs (or without an identity,
or the same shard twice), then writes OUT:

    shard-I-of-N/          each shard's directory, copied as it is (links stay links)
    results.json           every shard's tests (logdir pointing into its copy),
                           job: the union of machines, earliest start, latest end
    status.log             the shards' status.log, one after the other
    control.srv keyval     from the first shard / naming the shards

junit.xml and report.html are then written from it as for any run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from multihost_migration.errors import ReportError
from multihost_migration.report.model import RESULTS_FILE, inside


@dataclass(frozen=True)
class Shard:
    path: Path
    data: dict[str, Any]

    @property
    def job(self) -> dict[str, Any]:
        job = self.data.get("job")
        return job if isinstance(job, dict) else {}

    @property
    def label(self) -> str:
        shard = self.job.get("shard")
        return f"shard-{str(shard).replace('/', '-of-')}" if shard else f"run-{self.path.name}"


def read_shard(path: Path) -> Shard:
    file = path / RESULTS_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ReportError(str(file), f"cannot read: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise ReportError(str(file), "not a results.json (no 'tests' list)")
    return Shard(path.resolve(), data)


def check_same_job(shards: Sequence[Shard]) -> str:
    """The identity all the shards share; ReportError naming the odd one out."""
    if not shards:
        raise ReportError("merge", "no results directories given")
    first = shards[0]
    identity = first.job.get("identity")
    for shard in shards:
        own = shard.job.get("identity")
        if not own:
            raise ReportError(str(shard.path), "results.json has no job identity (a run "
                              "older than sharding): cannot tell which job it belongs to")
        if own != identity:
            raise ReportError(str(shard.path), f"another job (identity {str(own)[:12]}) than "
                              f"{first.path} ({str(identity)[:12]}): control file, cfg, "
                              "arguments or inventory differ; refusing to merge")
    labels = [s.label for s in shards]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ReportError("merge", f"{', '.join(twice)} given more than once")
    return str(identity)


def _logdir(shard: Shard, sub: str, test: dict[str, Any]) -> str:
    """The test's log directory inside OUT (relative), or its raw value."""
    raw = str(test.get("logdir") or "")
    group, name = str(test.get("group") or ""), str(test.get("name") or "")
    if group and name and (shard.path / group / name).is_dir():
        return f"{sub}/{group}/{name}"
    path = Path(raw)
    if raw and not path.is_absolute() and (shard.path / path).is_dir():
        return f"{sub}/{raw}"
    if raw and path.is_absolute() and inside(shard.path, path):
        return f"{sub}/{path.resolve().relative_to(shard.path)}"
    if path.name == "debug" and (shard.path / "debug").is_dir():
        return f"{sub}/debug"
    return raw


def merged_results(shards: Sequence[Shard], identity: str) -> dict[str, Any]:
    tests: list[dict[str, Any]] = []
    machines: set[str] = set()
    starts: list[float] = []
    ends: list[float] = []
    for shard in shards:
        job = shard.job
        machines.update(str(m) for m in job.get("machines") or [])
        for key, into in (("started", starts), ("finished", ends)):
            if isinstance(job.get(key), (int, float)):
                into.append(float(job[key]))
        for test in shard.data["tests"]:
            if isinstance(test, dict):
                tests.append({**test, "logdir": _logdir(shard, shard.label, test),
                              "shard": job.get("shard")})
    first = shards[0].job
    job_out: dict[str, Any] = {
        "machines": sorted(machines), "started": min(starts) if starts else None,
        "finished": max(ends) if ends else None, "control": first.get("control"),
        "args": first.get("args"), "identity": identity,
        "shards": [{"shard": s.job.get("shard"), "dir": s.label,
                    "machines": s.job.get("machines")} for s in shards]}
    return {"job": job_out, "tests": tests}


def merge(dirs: Sequence[Path], out: Path, overwrite: bool = False) -> Path:
    """Write the merged directory OUT (junit.xml/report.html: the caller)."""
    shards = [read_shard(d) for d in dirs]
    identity = check_same_job(shards)
    for shard in shards:
        if inside(shard.path, out) or inside(out, shard.path):
            raise ReportError(str(out), f"-o and the shard {shard.path} overlap")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ReportError(str(out), "exists and is not empty (pass --overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    status: list[str] = []
    for shard in shards:
        target = out / shard.label
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(shard.path, target, symlinks=True)
        status.append(_read_optional(shard.path / "status.log") or "")
    (out / RESULTS_FILE).write_text(json.dumps(merged_results(shards, identity), indent=1))
    (out / "status.log").write_text("".join(s if s.endswith("\n") or not s else s + "\n"
                                            for s in status))
    control = _read_optional(shards[0].path / "control.srv")
    if control is not None:
        (out / "control.srv").write_text(control)
    (out / "keyval").write_text(f"job_identity={identity}\n" + "".join(
        f"shard={s.job.get('shard')} {s.label}\n" for s in shards))
    return out


def _read_optional(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
