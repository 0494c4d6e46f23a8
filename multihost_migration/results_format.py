"""What a client job hands back to the controller, and the report reads.

One place for the formats that cross the client / controller boundary, so
that the controller and the report never import the client (nor, through
it, QEMU, QMP or console code).  Pure: standard library only.

* The client's stdout, streamed to the controller over SSH: a line starting
  with STATUS_PREFIX carries a status.log line, one starting with
  PROGRESS_PREFIX a progress message for the live display
  (`phase<TAB>detail` or `migrating<TAB>vm<TAB>percent<TAB>mbps`); any other
  line is the client's console output.
* `redact`: params fit for result files (params.json, results.json).
* migrations.json (MIGRATIONS_FILE, in each host's result directory): a JSON
  list with one `MigrationRecord` per migration the host took part in:

      {"id": "mig1", "src": "h1", "dst": "h2", "vms": ["vm1"],
       "role": "src" | "dst" | "none",
       "stats": {"vm1": {<qemu/stats.py MigrationStats.as_dict()>,
                         "evidence": {...} (data-path scenarios),
                         "network": {...} (guests with a NIC, netcheck/:
                            longest_gap_ms, lost, sent, tcp_alive_after,
                            first_reply_after_mark_ms, fdb: {...})}}}

  The controller copies the source's records of every migration into
  results.json (`tests[].migrations`), where the report reads them back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

STATUS_PREFIX = "MHM_STATUS\t"
PROGRESS_PREFIX = "MHM_PROGRESS\t"

#: A params key that contains one of these (any case) is a secret.
SECRET_WORDS = ("secret", "password", "passwd", "ssh_pass", "token")
REDACTED = "<redacted>"

MIGRATIONS_FILE = "migrations.json"
ROLES = ("src", "dst", "none")


def redact(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params fit for result files: secrets and passwords replaced."""
    return {k: (REDACTED if any(w in k.lower() for w in SECRET_WORDS) else v)
            for k, v in params.items()}


def _str(value: Any, default: str) -> str:
    return value if isinstance(value, str) else default


@dataclass(frozen=True)
class MigrationRecord:
    """One migration as one host saw it (an entry of migrations.json)."""

    id: str
    src: str
    dst: str
    vms: tuple[str, ...]
    role: str                                   # ROLES: this host's part in it
    #: vm name -> its statistics (JSON data, kept as written)
    stats: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "src": self.src, "dst": self.dst, "vms": list(self.vms),
                "role": self.role, "stats": dict(self.stats)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "MigrationRecord":
        """Lenient: a field that is absent or of the wrong type gets a
        placeholder ("?" for id/src/dst, "" for role, empty vms and stats)."""
        vms = raw.get("vms")
        stats = raw.get("stats")
        return cls(id=_str(raw.get("id"), "?"), src=_str(raw.get("src"), "?"),
                   dst=_str(raw.get("dst"), "?"),
                   vms=tuple(str(v) for v in vms) if isinstance(vms, (list, tuple)) else (),
                   role=_str(raw.get("role"), ""),
                   stats=stats if isinstance(stats, dict) else {})

    @property
    def network(self) -> dict[str, Mapping[str, Any]]:
        """Each VM's network checks (optional: VMs with a NIC only)."""
        return {vm: st["network"] for vm, st in self.stats.items()
                if isinstance(st, dict) and isinstance(st.get("network"), dict)}

    @property
    def order(self) -> tuple[int, str]:
        """Sort key: mig1, mig2, ..., mig10 in the order they were started."""
        digits = self.id[len(self.id.rstrip("0123456789")):]
        return (int(digits) if digits else 0, self.id)


def write_migrations(path: Path, records: Iterable[MigrationRecord]) -> None:
    path.write_text(json.dumps([r.to_json() for r in records], indent=1))


def read_migrations(path: Path) -> list[MigrationRecord]:
    """The records of one migrations.json; [] when it is missing or not a
    JSON list (a host that died before writing it); entries that are not
    objects are skipped."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [MigrationRecord.from_json(r) for r in data if isinstance(r, dict)]


def source_records(paths: Iterable[Path]) -> list[MigrationRecord]:
    """Every migration once, from its source host's record, in start order."""
    out: list[MigrationRecord] = []
    for path in paths:
        out += [r for r in read_migrations(path) if r.role == "src"]
    return sorted(out, key=lambda r: r.order)


def role_of(is_src: bool, is_dst: bool) -> str:
    return "src" if is_src else "dst" if is_dst else "none"


__all__ = ["MIGRATIONS_FILE", "PROGRESS_PREFIX", "REDACTED", "ROLES", "SECRET_WORDS",
           "STATUS_PREFIX", "MigrationRecord", "read_migrations", "redact", "role_of",
           "source_records", "write_migrations"]
