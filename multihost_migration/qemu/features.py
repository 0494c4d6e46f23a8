"""What a QEMU can do for migration, read from its own QMP schema.

A scenario declares the QEMU features it needs (`qemu_features = ...`) by
their QMP schema names; preflight asks each host's QEMU for its schema
(`query-qmp-schema`, once per binary) and a test whose feature is missing
on either host of the pair is TEST_NA, naming the feature and the version.
Never a table of version numbers: the answer is what QEMU itself says.

Names, as a scenario writes them (qualified, or plain when unambiguous):

    command:migrate-pause          a QMP command
    event:MIGRATION                a QMP event
    capability:postcopy-preempt    a MigrationCapability value
    parameter:zero-page-detection  a member of migrate-set-parameters
    multifd-compression:zstd       a value of an enum-typed parameter
    zstd, mapped-ram, migrate-pause   plain: any kind with that name

Pure (no I/O): preflight runs QEMU and hands the QMP transcript here;
the client gets the pair's features as one param (`qemu_pair_features`,
`QemuFeatures.to_param`) and `MigrationPlan.supports` reads it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

#: Param: the features a test needs (space separated names, see above).
NEEDS_PARAM = "qemu_features"
#: Param: the features both hosts' QEMUs have (set by the controller).
PAIR_PARAM = "qemu_pair_features"

_KINDS = ("command", "event", "capability", "parameter")
#: Commands and events kept for the pair (the param stays small): these words.
_MIGRATION_WORDS = ("migrat", "postcopy", "MIGRAT", "RESUME", "STOP")


def probe_command(binary: str, timeout: float = 20.0) -> str:
    """Shell command: start `binary` with no machine, ask its QMP schema, quit.
    Its stdout is the QMP transcript `schema_from_transcript` reads."""
    script = ('{"execute":"qmp_capabilities"}\n{"execute":"query-qmp-schema"}\n'
              '{"execute":"quit"}\n')
    # The pause before the exit: the reply (~200 KB) is read to its end
    # before the exit status arrives (seen cut short without it).
    return (f"printf %s {shlex.quote(script)} | timeout {timeout:g} "
            f"{shlex.quote(binary)} -machine none -nodefaults -display none -S "
            f"-qmp stdio; status=$?; sleep 0.5; exit $status")


def schema_from_transcript(text: str) -> list[dict[str, Any]]:
    """The `query-qmp-schema` reply from a QMP transcript (one JSON per
    line); ValueError when there is none."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue
        reply = message.get("return") if isinstance(message, dict) else None
        if isinstance(reply, list) and reply and isinstance(reply[0], dict) \
                and "meta-type" in reply[0]:
            return reply
    raise ValueError(f"no query-qmp-schema reply in the QMP transcript: {text[:300]!r}")


def _members(entity: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in entity.get("members") or [] if isinstance(m, Mapping)]


@dataclass(frozen=True)
class QemuFeatures:
    """Qualified feature names (`kind:name`) one QEMU, or a pair, has."""

    names: frozenset[str]

    @classmethod
    def from_schema(cls, schema: Sequence[Mapping[str, Any]]) -> "QemuFeatures":
        by_name = {str(e.get("name")): e for e in schema}
        names: set[str] = set()
        for entity in schema:
            kind, name = entity.get("meta-type"), str(entity.get("name"))
            if kind in ("command", "event"):
                names.add(f"{kind}:{name}")
            if kind == "enum" and "postcopy-ram" in (entity.get("values") or ()):
                names.update(f"capability:{v}" for v in entity.get("values") or ())
        arg_type = (by_name.get("migrate-set-parameters") or {}).get("arg-type")
        for member in _members(by_name.get(str(arg_type)) or {}):
            parameter = str(member.get("name"))
            names.add(f"parameter:{parameter}")
            enum = by_name.get(str(member.get("type"))) or {}
            if enum.get("meta-type") == "enum":
                names.update(f"{parameter}:{v}" for v in enum.get("values") or ())
        return cls(frozenset(names))

    @classmethod
    def from_param(cls, value: str) -> "QemuFeatures":
        return cls(frozenset(value.split()))

    def to_param(self) -> str:
        """The migration-related names only (commands and events with a
        migration word, every capability, parameter and parameter value)."""
        return " ".join(sorted(n for n in self.names if not n.startswith(("command:", "event:"))
                               or any(w in n for w in _MIGRATION_WORDS)))

    def has(self, feature: str) -> bool:
        """Whether `feature` (qualified, or a plain name of any kind) is here."""
        if ":" in feature:
            return feature in self.names
        return any(n.split(":", 1)[1] == feature for n in self.names)

    def missing(self, features: Iterable[str]) -> list[str]:
        return [f for f in features if not self.has(f)]

    def __and__(self, other: "QemuFeatures") -> "QemuFeatures":
        return QemuFeatures(self.names & other.names)


def needed(params: Mapping[str, Any]) -> list[str]:
    """The features a test declares (`qemu_features`), each once, in order."""
    return list(dict.fromkeys(str(params.get(NEEDS_PARAM) or "").split()))


def describe(feature: str) -> str:
    """'capability mapped-ram' for 'capability:mapped-ram'; plain names as is."""
    kind, _, name = feature.partition(":")
    if not name:
        return feature
    return f"{kind} {name}" if kind in _KINDS else f"{kind} value {name}"


__all__ = ["NEEDS_PARAM", "PAIR_PARAM", "QemuFeatures", "describe", "needed", "probe_command",
           "schema_from_transcript"]
