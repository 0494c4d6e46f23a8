"""Migration capabilities/parameters from params, set and read back (fake QMP)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import pytest

from multihost_migration.errors import (ConfigError, MigrationSettingsError,
                                        QMPCommandError)
from multihost_migration.qemu.process import QemuProcess
from multihost_migration.qemu.qmp_channel import QMPChannel
from multihost_migration.qemu.settings import MigrationSettings, convert
from multihost_migration.qemu.vm import VM, VMState

LOG = logging.getLogger("test")
DEFAULTS = {"downtime-limit": 300, "max-bandwidth": 134217728, "multifd-channels": 2,
            "multifd-compression": "none", "block-incremental": False, "tls-creds": ""}


class FakeQEMU(QMPChannel):
    """Keeps capabilities and parameters like QEMU; can drop or refuse values."""

    def __init__(self) -> None:
        super().__init__("fake", LOG)
        self.caps = {"xbzrle": False, "multifd": False, "postcopy-ram": False,
                     "events": True}
        self.params: dict[str, Any] = dict(DEFAULTS)
        self.ignore: set[str] = set()
        self.sent: list[tuple[str, dict[str, Any]]] = []

    @property
    def connected(self) -> bool:
        return True

    def execute(self, command: str, arguments: Optional[dict[str, Any]] = None,
                timeout: float = 30.0) -> Any:
        args = dict(arguments or {})
        self.sent.append((command, args))
        if command == "query-migrate-capabilities":
            return [{"capability": k, "state": v} for k, v in self.caps.items()]
        if command == "query-migrate-parameters":
            return dict(self.params)
        if command == "migrate-set-capabilities":
            for item in args["capabilities"]:
                if item["capability"] not in self.caps:
                    raise QMPCommandError("fake", command, args, "GenericError",
                                          f"Parameter 'capability' does not accept "
                                          f"value '{item['capability']}'")
            for item in args["capabilities"]:
                self.caps[item["capability"]] = item["state"]
            return {}
        if command == "migrate-set-parameters":
            if args.get("downtime-limit", 0) > 2000000:
                raise QMPCommandError("fake", command, args, "GenericError",
                                      "Parameter 'downtime_limit' expects an integer")
            self.params.update({k: v for k, v in args.items() if k not in self.ignore})
            return {}
        return {}

    def close(self, timeout: float = 5.0) -> None:
        pass


class AliveProcess(QemuProcess):
    def __init__(self) -> None:
        super().__init__("fake", Path("/nonexistent/log"), LOG)

    def is_alive(self) -> bool:
        return True

    def wait(self, timeout: float) -> bool:
        return False


def parsed(params: dict[str, str]) -> MigrationSettings:
    """Settings as the migration's plan parses them, once."""
    return MigrationSettings.from_params(params)


def vm_with(tmp_path: Path, qemu: FakeQEMU) -> VM:
    vm = VM("vm1", {}, tmp_path)
    vm._qmp, vm._process, vm._state = qemu, AliveProcess(), VMState.INCOMING
    vm._default_parameters = dict(DEFAULTS)
    return vm


def test_from_params() -> None:
    settings = MigrationSettings.from_params({
        "migration_capabilities": "postcopy-ram multifd postcopy-ram",
        "migrate_parameter_downtime-limit": "250",
        "migrate_parameter_max_bandwidth": "1G", "migrate_parameter_empty": "",
        "postcopy_after_passes": "1", "unrelated": "x"})
    assert settings.capabilities == ("postcopy-ram", "multifd")
    assert settings.parameters == (("downtime-limit", "250"), ("max-bandwidth", "1G"))
    assert settings.postcopy_after_passes == 1 and not settings.empty
    assert MigrationSettings.from_params({}).empty
    with pytest.raises(ConfigError, match="postcopy-ram"):
        MigrationSettings.from_params({"postcopy_after_passes": "1"})
    with pytest.raises(ConfigError, match="integer"):
        MigrationSettings.from_params({"postcopy_after_passes": "one",
                                       "migration_capabilities": "postcopy-ram"})


def test_convert_follows_qemu_types() -> None:
    assert convert("max-bandwidth", "32M", 134217728) == 32 << 20
    assert convert("block-incremental", "yes", False) is True
    assert convert("multifd-compression", "zlib", "none") == "zlib"
    assert convert("new-int", "7", None) == 7 and convert("new-str", "x", None) == "x"
    with pytest.raises(ConfigError, match="integer"):
        convert("downtime-limit", "fast", 300)
    with pytest.raises(ConfigError, match="yes or no"):
        convert("block-incremental", "maybe", False)


def test_apply_sets_reads_back_and_resets(tmp_path: Path) -> None:
    qemu = FakeQEMU()
    vm = vm_with(tmp_path, qemu)
    applied = vm.apply_migration_settings(parsed({
        "migration_capabilities": "multifd postcopy-ram",
        "migrate_parameter_multifd-channels": "4", "postcopy_after_passes": "2"}))
    assert applied.capabilities["multifd"] and applied.capabilities["postcopy-ram"]
    assert applied.parameters["multifd-channels"] == 4
    assert applied.postcopy_after_passes == 2   # for the MigrateRequest: not kept
    assert not hasattr(vm, "postcopy_after_passes")
    qemu.params["tls-creds"] = "mhm-tls-server"  # selected per direction, kept
    again = vm.apply_migration_settings(parsed({"migration_capabilities": "xbzrle"}))
    assert again.capabilities == {"xbzrle": True, "multifd": False,
                                  "postcopy-ram": False, "events": True}
    assert again.parameters["multifd-channels"] == 2  # back to QEMU's launch value
    assert again.parameters["tls-creds"] == "mhm-tls-server"
    assert again.postcopy_after_passes is None


def test_value_not_taken_is_an_error(tmp_path: Path) -> None:
    qemu = FakeQEMU()
    qemu.ignore.add("downtime-limit")
    vm = vm_with(tmp_path, qemu)
    with pytest.raises(MigrationSettingsError) as info:
        vm.apply_migration_settings(parsed({"migrate_parameter_downtime-limit": "100"}))
    err = info.value
    assert (err.name, err.requested, err.actual) == ("downtime-limit", 100, 300)
    assert str(err) == ("vm1: migration parameter downtime-limit=100 not taken "
                        "(QEMU reports 300)")


def test_qemu_refusal_carries_its_message(tmp_path: Path) -> None:
    vm = vm_with(tmp_path, FakeQEMU())
    with pytest.raises(MigrationSettingsError) as info:
        vm.apply_migration_settings(parsed({"migration_capabilities": "no-such-cap"}))
    assert "no-such-cap" in str(info.value) and "does not accept" in str(info.value)
    with pytest.raises(MigrationSettingsError) as params_info:
        vm.apply_migration_settings(parsed({"migrate_parameter_downtime-limit": "9999999"}))
    assert "refused by QEMU" in str(params_info.value)
    assert params_info.value.qemu_error.startswith("Parameter")


def test_settings_need_a_running_qemu(tmp_path: Path) -> None:
    vm = VM("vm1", {}, tmp_path)
    with pytest.raises(Exception, match="new"):
        vm.apply_migration_settings(parsed({}))
