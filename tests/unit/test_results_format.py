"""results_format: the client's stdout prefixes, redaction, migrations.json."""

from __future__ import annotations

import json
from pathlib import Path

from multihost_migration.results_format import (MIGRATIONS_FILE, MigrationRecord,
                                                read_migrations, redact, role_of,
                                                source_records, write_migrations)


def test_redact_hides_every_secret_key_whatever_its_case() -> None:
    params = {"sync_secret": "s", "Password": "p", "ssh_pass": "x", "api_TOKEN": "t",
              "vms": "vm1"}
    assert redact(params) == {"sync_secret": "<redacted>", "Password": "<redacted>",
                              "ssh_pass": "<redacted>", "api_TOKEN": "<redacted>",
                              "vms": "vm1"}


def test_a_record_round_trips_through_the_file(tmp_path: Path) -> None:
    record = MigrationRecord(id="mig1", src="h1", dst="h2", vms=("vm1", "vm2"),
                             role=role_of(True, False),
                             stats={"vm1": {"status": "completed", "downtime_ms": 12}})
    write_migrations(tmp_path / MIGRATIONS_FILE, [record])
    raw = json.loads((tmp_path / MIGRATIONS_FILE).read_text())
    assert raw == [{"id": "mig1", "src": "h1", "dst": "h2", "vms": ["vm1", "vm2"],
                    "role": "src", "stats": {"vm1": {"status": "completed",
                                                      "downtime_ms": 12}}}]
    assert read_migrations(tmp_path / MIGRATIONS_FILE) == [record]


def test_a_malformed_record_gets_placeholders() -> None:
    record = MigrationRecord.from_json({"id": 3, "vms": "vm1", "stats": [1]})
    assert (record.id, record.src, record.dst, record.vms, record.role, record.stats) == \
        ("?", "?", "?", (), "", {})


def test_missing_or_broken_files_read_as_no_migration(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "object.json").write_text('{"id": "mig1"}')
    for name in ("absent.json", "bad.json", "object.json"):
        assert read_migrations(tmp_path / name) == []


def test_source_records_once_each_in_start_order(tmp_path: Path) -> None:
    def rec(mig: str, role: str) -> dict[str, object]:
        return {"id": mig, "src": "a", "dst": "b", "vms": ["vm1"], "role": role, "stats": {}}
    (tmp_path / "a.json").write_text(json.dumps([rec("mig10", "src"), rec("mig2", "dst")]))
    (tmp_path / "b.json").write_text(json.dumps([rec("mig2", "src"), rec("mig10", "dst"),
                                                 "junk"]))
    found = source_records([tmp_path / "a.json", tmp_path / "b.json"])
    assert [(r.id, r.role) for r in found] == [("mig2", "src"), ("mig10", "src")]
