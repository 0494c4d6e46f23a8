"""Migration capabilities and parameters: parsed from params, set, read back.

Params (per migration, on both hosts):

    migration_capabilities = xbzrle auto-converge multifd   # turned on
    migrate_parameter_downtime-limit = 300                  # any QMP parameter;
    migrate_parameter_max_bandwidth = 32M                   # '_' means '-'; K/M/G
    postcopy_after_passes = 1     # switch to postcopy after N dirty-sync passes

A parameter's value is converted to the type QEMU reports for it in
query-migrate-parameters (int, bool, str).  Everything set is read back;
a value QEMU did not take raises MigrationSettingsError.

Settings are declarative: QEMU keeps capabilities and parameters for the
life of the process, also those set while it was a migration destination,
so `apply` turns off every capability not listed (except `events`) and
puts every parameter not given back to its value at launch (`defaults`),
TLS parameters excepted (the VM selects those per direction).

`MigrationSettings.from_params` runs once per migration (plan.py); the
functions here work on the QEMU's QMP link (link.py), not on the VM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ..errors import ConfigError, MigrationSettingsError, QMPCommandError
from ..params import parse_bool
from .link import QemuLink

PARAM_PREFIX = "migrate_parameter_"
_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_KEEP_CAPABILITIES = frozenset({"events"})
_KEEP_PARAMETERS = frozenset({"tls-creds", "tls-hostname", "tls-authz"})


@dataclass(frozen=True)
class MigrationSettings:
    """What to set before a migration (typed, parsed once from params)."""

    capabilities: tuple[str, ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    postcopy_after_passes: Optional[int] = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "MigrationSettings":
        caps = tuple(dict.fromkeys(str(params.get("migration_capabilities") or "").split()))
        parameters = tuple(sorted(
            (key[len(PARAM_PREFIX):].replace("_", "-"), str(value).strip())
            for key, value in params.items()
            if key.startswith(PARAM_PREFIX) and value is not None and str(value) != ""))
        passes = str(params.get("postcopy_after_passes") or "").strip()
        after: Optional[int] = None
        if passes:
            try:
                after = int(passes)
            except ValueError:
                raise ConfigError(f"postcopy_after_passes={passes!r} is not an "
                                  f"integer") from None
            if after < 0:
                raise ConfigError(f"postcopy_after_passes={passes!r} must be >= 0")
            if "postcopy-ram" not in caps:
                raise ConfigError("postcopy_after_passes needs postcopy-ram in "
                                  "migration_capabilities")
        return cls(caps, parameters, after)

    @property
    def empty(self) -> bool:
        return not self.capabilities and not self.parameters


@dataclass(frozen=True)
class AppliedSettings:
    """What QEMU reported after the settings were applied (full tables)."""

    capabilities: dict[str, bool] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    postcopy_after_passes: Optional[int] = None


def convert(name: str, text: str, current: Any) -> Any:
    """`text` as the type of `current` (QEMU's present value of `name`)."""
    if isinstance(current, bool):
        return parse_bool(text, f"migrate parameter {name}")
    if isinstance(current, int) or (current is None and _is_number(text)):
        return _int_with_suffix(name, text)
    return text


def _is_number(text: str) -> bool:
    try:
        _int_with_suffix("", text)
    except ConfigError:
        return False
    return True


def _int_with_suffix(name: str, text: str) -> int:
    body, scale = text, 1
    if text and text[-1].lower() in _SUFFIXES:
        body, scale = text[:-1], _SUFFIXES[text[-1].lower()]
    try:
        return int(body) * scale
    except ValueError:
        raise ConfigError(f"migrate parameter {name}={text!r}: expected an "
                          f"integer (K/M/G suffix allowed)") from None


def query_capabilities(qmp: QemuLink) -> dict[str, bool]:
    return {str(item["capability"]): bool(item["state"])
            for item in qmp.execute("query-migrate-capabilities")}


def query_parameters(qmp: QemuLink) -> dict[str, Any]:
    return dict(qmp.execute("query-migrate-parameters"))


def set_capabilities(qmp: QemuLink, wanted: Mapping[str, bool]) -> dict[str, bool]:
    """Set capabilities, read them back; MigrationSettingsError on a mismatch."""
    if not wanted:
        return query_capabilities(qmp)
    caps = [{"capability": name, "state": bool(state)} for name, state in wanted.items()]
    try:
        qmp.execute("migrate-set-capabilities", {"capabilities": caps})
    except QMPCommandError as err:
        names = " ".join(name for name, state in wanted.items() if state)
        raise MigrationSettingsError(qmp.name, "capabilities", names, True,
                                     qemu_error=err.desc) from err
    actual = query_capabilities(qmp)
    for name, state in wanted.items():
        if actual.get(name) != bool(state):
            raise MigrationSettingsError(qmp.name, "capability", name, bool(state),
                                         actual.get(name))
    return actual


def set_parameters(qmp: QemuLink, wanted: Mapping[str, str]) -> dict[str, Any]:
    """Set parameters (string values converted), read back; raise on a mismatch."""
    current = query_parameters(qmp)
    if not wanted:
        return current
    typed = {name: convert(name, str(text), current.get(name))
             for name, text in wanted.items()}
    return set_typed_parameters(qmp, typed)


def set_typed_parameters(qmp: QemuLink, typed: Mapping[str, Any]) -> dict[str, Any]:
    try:
        qmp.execute("migrate-set-parameters", dict(typed))
    except QMPCommandError as err:
        name = " ".join(typed)
        raise MigrationSettingsError(qmp.name, "parameters", name,
                                     dict(typed), qemu_error=err.desc) from err
    actual = query_parameters(qmp)
    for name, value in typed.items():
        if actual.get(name) != value:
            raise MigrationSettingsError(qmp.name, "parameter", name, value,
                                         actual.get(name))
    return actual


def apply(qmp: QemuLink, settings: MigrationSettings,
          defaults: Optional[Mapping[str, Any]] = None) -> AppliedSettings:
    """Capabilities first (multifd must be on before multifd-channels matters).

    Capabilities not listed are turned off; parameters not given go back to
    `defaults` (QEMU's values at launch) when they differ from them.
    """
    wanted_caps = {name: False for name, state in query_capabilities(qmp).items()
                   if state and name not in _KEEP_CAPABILITIES}
    wanted_caps.update({name: True for name in settings.capabilities})
    caps = set_capabilities(qmp, wanted_caps)
    current = query_parameters(qmp)
    requested = dict(settings.parameters)
    typed = {name: value for name, value in (defaults or {}).items()
             if name not in _KEEP_PARAMETERS and name not in requested
             and name in current and current[name] != value}
    typed.update({name: convert(name, text, current.get(name))
                  for name, text in requested.items()})
    params = set_typed_parameters(qmp, typed) if typed else current
    qmp.log.info("migration settings: capabilities %s, parameters %s",
                " ".join(settings.capabilities) or "-",
                " ".join(f"{k}={params.get(k)}" for k, _ in settings.parameters) or "-")
    return AppliedSettings(caps, params, settings.postcopy_after_passes)
