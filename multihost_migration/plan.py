"""The plan of one migration: its params read once, typed and frozen.

`MultihostMigration.migrate()` builds a `MigrationPlan` from the params as
they are at that call (the test's params plus `params_append`), and
everything below takes the plan: the migration steps on both hosts, the
VMs' settings and `MigrateRequest`s.  Nothing writes into the params in
flight; a test that changes its params between two migrations gets a plan
built from the new ones at its next migrate().

Params read here (and nowhere else on the migration path):

    migration_protocol   tcp | exec | fd        -> transport (Transport enum)
    migration_listen     0.0.0.0                -> listen (destination)
    migration_offline    yes: stop the guest, migrate, continue it there
                         (legacy names beside ours, read when ours is unset:
                         mig_protocol for migration_protocol, mig_offline)
    cancel_delay         seconds: the source cancels the migration then
                         (legacy name and meaning); unset or None: it completes
    not_wait_for_migration  yes: the source only starts it (legacy tests wait
                         themselves, vm.wait_for_migration)
    migrate_parallel     no: the VMs of a migration one after the other
    mig_timeout, sync_timeout, work_timeout, mig_stall_timeout -> timeouts
    migration_tls, migration_tls_dir            -> tls (kind, directory; by
                         default the job's own, images_base_dir/mhm-tls-<job_id>)
    migration_capabilities, migrate_parameter_<name>, postcopy_after_passes
                         -> settings (qemu/settings.py parses them)
    vms, and per VM its params and images (imagespec.py)  -> vms
    storage_mode, storage_copy_*                -> storage (storage.StoragePlan);
                         copy adds pause-before-switchover to the settings
                         (the disks' mirror completes while the source waits)
    qemu_pair_features   (set by the controller from each host's QMP schema)
                         -> features; `supports("postcopy-preempt")` asks it

A new knob is one field here and one line in `MigrationPlan.from_params`;
a new transport is one `Transport` member (qemu/transport.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional, Sequence, Union

from multihost_migration.errors import ConfigError
from multihost_migration.imagespec import ImageSpec, image_names, image_specs, images_dir
from multihost_migration.params import Params, parse_bool
from multihost_migration.qemu.features import PAIR_PARAM, QemuFeatures
from multihost_migration.qemu.migration import MigrateRequest
from multihost_migration.qemu.settings import MigrationSettings
from multihost_migration.qemu.tls import tls_kind
from multihost_migration.qemu.transport import Transport
from multihost_migration.storage import StoragePlan

DEFAULT_JOB_ID = "mhm"


def between_hosts(value: Union[Transport, str]) -> Transport:
    """`migration_protocol` as a Transport that reaches another host."""
    try:
        transport = Transport(value)
    except ValueError:
        transport = None
    if transport is None or not transport.between_hosts:
        raise ConfigError(f"migration_protocol = {value!r}: between hosts use tcp, exec "
                          "or fd (unix only reaches the same host)")
    return transport


@dataclass(frozen=True)
class Timeouts:
    """Seconds: a migration, a sync step, a peer's start/check work, no progress."""

    migration: float = 300.0
    sync: float = 120.0
    work: float = 600.0
    stall: float = 60.0

    @classmethod
    def from_params(cls, params: Params) -> "Timeouts":
        return cls(migration=params.get_float("mig_timeout", cls.migration),
                   sync=params.get_float("sync_timeout", cls.sync),
                   work=params.get_float("work_timeout", cls.work),
                   stall=params.get_float("mig_stall_timeout", cls.stall))


@dataclass(frozen=True)
class TLSPlan:
    """TLS credentials of the migration: kind and directory (shared storage)."""

    kind: str
    directory: str
    own: bool   # the job makes (and removes) them: no migration_tls_dir given

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Optional["TLSPlan"]:
        kind = tls_kind(params)
        if kind is None:
            return None
        given = str(params.get("migration_tls_dir") or "")
        if given:
            return cls(kind, given, own=False)
        job_id = str(params.get("job_id", DEFAULT_JOB_ID))
        return cls(kind, str(Path(images_dir(params)) / f"mhm-tls-{job_id}"), own=True)


@dataclass(frozen=True)
class VMPlan:
    """One VM of the migration: the params its QEMU is built from, its disks."""

    name: str
    params: Mapping[str, Any]
    images: tuple[ImageSpec, ...]


def vm_params(params: Params, name: str, tls: Optional[TLSPlan] = None) -> Params:
    """A VM's params (a copy): disks this test creates get names unique to
    the job, so parallel pairs on the same shared storage never share a
    disk; with TLS, the credentials directory of the plan."""
    result = params.object_params(name)
    job_id = str(params.get("job_id", DEFAULT_JOB_ID))
    if StoragePlan.from_params(params).copy and params.get("hostid"):
        # copy: each host its own disk, also where the storage is shared after all
        job_id = f"{job_id}-{params.get('hostid')}"
    for image in image_names(result):
        iparams = result.object_params(image)
        if parse_bool(iparams.get("create_image", "no"), f"{name}: create_image") \
                and not iparams.get("image_path"):
            result[f"image_name_{image}"] = f"{iparams.get('image_name', image)}-{job_id}-{name}"
    if tls is not None:
        result["migration_tls_dir"] = tls.directory
    return result


def vm_plans(params: Params, names: Sequence[str]) -> tuple[VMPlan, ...]:
    """The VMs `names`, each with its params and images."""
    tls = TLSPlan.from_params(params)
    plans = []
    for name in names:
        vparams = vm_params(params, name, tls)
        plans.append(VMPlan(name, MappingProxyType(dict(vparams)),
                            image_specs(name, vparams)))
    return tuple(plans)


def pair_features(params: Mapping[str, Any]) -> Optional[QemuFeatures]:
    """What both hosts' QEMUs have, as the controller found it (or None)."""
    value = params.get(PAIR_PARAM)
    return QemuFeatures.from_param(str(value)) if value else None


def optional_seconds(params: Params, key: str) -> Optional[float]:
    """`key` in seconds, or None when unset, empty or None (legacy tests
    set `params["cancel_delay"] = None`)."""
    if params.get(key) in (None, "", "None"):
        return None
    return params.get_float(key)


@dataclass(frozen=True)
class MigrationPlan:
    """Everything one migration needs to know, read once from its params."""

    mig_id: str
    src: str
    dst: str
    vms: tuple[VMPlan, ...]
    transport: Transport = Transport.TCP
    listen: str = "0.0.0.0"
    offline: bool = False
    parallel: bool = True
    timeouts: Timeouts = Timeouts()
    settings: MigrationSettings = MigrationSettings()
    tls: Optional[TLSPlan] = None
    features: Optional[QemuFeatures] = None
    storage: StoragePlan = StoragePlan()
    cancel_delay: Optional[float] = None
    wait: bool = True

    @classmethod
    def from_params(cls, params: Params, *, mig_id: str, src: str, dst: str,
                    vms: Sequence[str]) -> "MigrationPlan":
        return cls(
            mig_id=mig_id, src=src, dst=dst, vms=vm_plans(params, vms),
            transport=between_hosts(str(params.get("migration_protocol",
                                                   params.get("mig_protocol", "tcp")))),
            listen=str(params.get("migration_listen", "0.0.0.0")),
            offline=params.get_bool("migration_offline", params.get("mig_offline", False)),
            parallel=params.get_bool("migrate_parallel", True),
            timeouts=Timeouts.from_params(params),
            settings=MigrationSettings.from_params(params),
            tls=TLSPlan.from_params(params),
            features=pair_features(params),
            storage=StoragePlan.from_params(params),
            cancel_delay=optional_seconds(params, "cancel_delay"),
            wait=not params.get_bool("not_wait_for_migration", False),
        ).with_storage_settings()

    def with_storage_settings(self) -> "MigrationPlan":
        """copy: the source pauses before the switchover, so the disks'
        mirrors complete while the guest is stopped (storage_copy.py)."""
        caps = self.settings.capabilities
        if not self.storage.copy or "pause-before-switchover" in caps:
            return self
        settings = replace(self.settings, capabilities=caps + ("pause-before-switchover",))
        return replace(self, settings=settings)

    def supports(self, feature: str) -> bool:
        """Does this pair's QEMUs both have `feature` (a QMP schema name, see
        qemu/features.py)?  The answer comes from each host's query-qmp-schema
        (preflight); ConfigError when the controller sent none (the test
        declares no `qemu_features`)."""
        if self.features is None:
            raise ConfigError(f"{self.mig_id}: does the pair support {feature!r}? No QMP "
                              f"schema answer in the params ({PAIR_PARAM}): declare the "
                              f"features the test needs in qemu_features")
        return self.features.has(feature)

    @property
    def vm_names(self) -> list[str]:
        return [vm.name for vm in self.vms]

    def vm(self, name: str) -> VMPlan:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise ConfigError(f"{self.mig_id}: VM {name!r} is not part of this migration "
                          f"({self.vm_names})")

    def request(self, ports: Union[int, Mapping[str, int]], **changes: Any) -> MigrateRequest:
        """The source's MigrateRequest for this plan (keywords override)."""
        fields: dict[str, Any] = {
            "transport": self.transport, "timeout": self.timeouts.migration,
            "postcopy_after_passes": self.settings.postcopy_after_passes}
        fields.update(changes)
        return MigrateRequest(self.dst, ports, **fields)


__all__ = ["MigrationPlan", "TLSPlan", "Timeouts", "VMPlan", "between_hosts", "pair_features",
           "vm_params", "vm_plans"]
