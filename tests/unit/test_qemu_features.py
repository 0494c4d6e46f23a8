"""Feature gating from QEMU's own QMP schema (qemu/features.py), its use in
preflight (TEST_NA naming the feature, the host and the version; the
schema asked once per binary) and in the plan (`supports`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.params import Params
from multihost_migration.plan import MigrationPlan
from multihost_migration.qemu import features
from multihost_migration.qemu.features import QemuFeatures, schema_from_transcript
from multihost_migration.remote import SshTarget
from multihost_migration.server import preflight
from multihost_migration.server.preflight import Preflight


def schema(caps: list[str], zero_page: bool, commands: tuple[str, ...] = ()) -> list[Any]:
    """A QMP schema in QEMU's shape (type names are numbers, as QEMU's)."""
    params = [{"name": "downtime-limit", "type": "int"},
              {"name": "multifd-compression", "type": "10"}]
    if zero_page:
        params.append({"name": "zero-page-detection", "type": "11"})
    return ([{"name": "migrate-set-parameters", "meta-type": "command", "arg-type": "5",
              "ret-type": "0"},
             {"name": "5", "meta-type": "object", "members": params},
             {"name": "10", "meta-type": "enum", "values": ["none", "zlib", "zstd"]},
             {"name": "11", "meta-type": "enum", "values": ["none", "legacy", "multifd"]},
             {"name": "12", "meta-type": "enum", "values": ["xbzrle", "postcopy-ram"] + caps},
             {"name": "MIGRATION", "meta-type": "event", "arg-type": "0"},
             {"name": "query-cpus-fast", "meta-type": "command", "arg-type": "0"}]
            + [{"name": c, "meta-type": "command", "arg-type": "0"} for c in commands])


V72 = schema(["postcopy-preempt", "validate-uuid"], False, ("migrate-pause", "migrate-recover"))
V100 = schema(["postcopy-preempt", "validate-uuid", "mapped-ram"], True,
              ("migrate-pause", "migrate-recover"))


def transcript(reply: list[Any]) -> str:
    return "\n".join([json.dumps({"QMP": {"version": {}}}), json.dumps({"return": {}}),
                      json.dumps({"return": reply}), json.dumps({"return": {}})])


def test_schema_names_by_kind_and_plain() -> None:
    have = QemuFeatures.from_schema(schema_from_transcript(transcript(V72)))
    assert have.has("capability:postcopy-preempt") and have.has("postcopy-preempt")
    assert have.has("command:migrate-pause") and have.has("migrate-recover")
    assert have.has("multifd-compression:zstd") and have.has("zlib")
    assert have.has("parameter:multifd-compression")
    assert not have.has("mapped-ram") and not have.has("zero-page-detection")
    assert not have.has("capability:migrate-pause")     # a command, not a capability
    assert have.missing(["zstd", "mapped-ram", "zero-page-detection:multifd"]) == [
        "mapped-ram", "zero-page-detection:multifd"]


def test_pair_param_keeps_migration_names_only_and_round_trips() -> None:
    have = QemuFeatures.from_schema(V100)
    param = have.to_param()
    assert "query-cpus-fast" not in param and "command:migrate-pause" in param
    back = QemuFeatures.from_param(param)
    assert back.has("mapped-ram") and back.has("zero-page-detection:multifd")
    pair = back & QemuFeatures.from_schema(V72)
    assert not pair.has("mapped-ram") and pair.has("postcopy-preempt")


def test_no_schema_in_transcript_is_an_error_with_the_text() -> None:
    with pytest.raises(ValueError, match="no query-qmp-schema reply.*Could not"):
        schema_from_transcript("qemu: Could not access KVM")


def test_describe_and_needed() -> None:
    assert features.describe("capability:mapped-ram") == "capability mapped-ram"
    assert features.describe("multifd-compression:zstd") == \
        "multifd-compression value zstd"
    assert features.needed({"qemu_features": "zstd  zlib zstd"}) == ["zstd", "zlib"]


class SchemaPreflight(Preflight):
    """Hosts answer --version, -machine help and the QMP probe from tables."""

    def __init__(self, tests: Any, versions: dict[str, str]) -> None:
        super().__init__({h: SshTarget(h) for h in versions}, tests, "python3", {})
        self.versions = versions
        self.probes: list[tuple[str, str]] = []

    def _run(self, host: str, command: str, timeout: float = 30.0) -> tuple[int, str]:
        version = self.versions[host]
        if "--version" in command:
            return 0, f"QEMU emulator version {version}"
        if "-machine help" in command:
            return 0, "Supported machines are:\npc-q35-7.2  Standard PC\n"
        if "query-qmp-schema" in command:
            self.probes.append((host, command))
            return 0, transcript(V100 if version.startswith("10.") else V72)
        return 0, ""


TEST = {"shortname": "mapped_ram", "vms": "vm1",
        "qemu_features": "mapped-ram migrate-pause zero-page-detection:multifd"}
PLAIN = {"shortname": "integrity", "vms": "vm1"}


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "_SCHEMA_CACHE", {})


def test_missing_feature_is_named_with_host_binary_and_version() -> None:
    check = SchemaPreflight([TEST, PLAIN], {"h1": "7.2.0", "h2": "10.0.2"})
    for host in ("h1", "h2"):
        check._qemu(host)
    reason = check.not_applicable(TEST)
    assert reason == ("h1: qemu-system-x86_64 (QEMU 7.2.0) lacks mapped-ram, "
                      "zero-page-detection value multifd (not in its QMP schema)")
    assert check.not_applicable(PLAIN) is None
    assert check.pair_params(PLAIN) == {"qemu_pair_versions": "7.2.0 10.0.2"}
    assert not check.failures


def test_pair_has_the_feature_its_param_reaches_the_plan() -> None:
    check = SchemaPreflight([TEST], {"h1": "10.0.2", "h2": "10.0.2"})
    for host in ("h1", "h2"):
        check._qemu(host)
    assert check.not_applicable(TEST) is None
    params = Params(dict({"vms": "vm1"}, **check.pair_params(TEST)))
    plan = MigrationPlan.from_params(params, mig_id="mig1", src="h1", dst="h2", vms=["vm1"])
    assert plan.supports("mapped-ram") and plan.supports("zero-page-detection:multifd")
    assert not plan.supports("capability:x-no-such-thing")


def test_schema_asked_once_per_binary_for_the_job() -> None:
    tests = [TEST, dict(TEST, shortname="other")]
    first = SchemaPreflight(tests, {"h1": "7.2.0", "h2": "7.2.0"})
    for host in ("h1", "h2"):
        first._qemu(host)
    second = SchemaPreflight(tests, {"h1": "7.2.0", "h2": "7.2.0"})   # another group
    second._qemu("h1")
    assert [h for h, _ in first.probes] == ["h1", "h2"] and not second.probes
    assert "-machine none" in first.probes[0][1] and "-qmp stdio" in first.probes[0][1]


def test_a_broken_probe_is_a_preflight_failure() -> None:
    class Broken(SchemaPreflight):
        def _run(self, host: str, command: str, timeout: float = 30.0) -> tuple[int, str]:
            if "query-qmp-schema" in command:
                return 1, "qemu: cannot open display"
            return super()._run(host, command, timeout)
    check = Broken([TEST], {"h1": "10.0.2", "h2": "10.0.2"})
    check._qemu("h1")
    [failure] = check.failures
    assert failure.name == "qmp schema" and "cannot open display" in failure.detail
    assert "3 tries" in failure.detail


def test_a_transcript_cut_short_is_asked_again() -> None:
    class Flaky(SchemaPreflight):
        def _run(self, host: str, command: str, timeout: float = 30.0) -> tuple[int, str]:
            code, out = super()._run(host, command, timeout)
            if "query-qmp-schema" in command and len(self.probes) == 1:
                return code, out[:300]        # the first answer cut short
            return code, out
    check = Flaky([TEST], {"h1": "10.0.2", "h2": "10.0.2"})
    check._qemu("h1")
    assert not check.failures and len(check.probes) == 2
    assert check.features[("h1", "qemu-system-x86_64")].has("mapped-ram")


def test_plan_without_an_answer_says_what_to_declare() -> None:
    plan = MigrationPlan.from_params(Params({"vms": "vm1"}), mig_id="mig1", src="h1",
                                     dst="h2", vms=["vm1"])
    with pytest.raises(ConfigError, match="qemu_features"):
        plan.supports("mapped-ram")
