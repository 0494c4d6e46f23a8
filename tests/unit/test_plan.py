"""The plan of a migration (plan.py): params read once, typed, frozen."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.migration import MigrationData
from multihost_migration.params import Params
from multihost_migration.plan import MigrationPlan, Timeouts, TLSPlan, between_hosts
from multihost_migration.qemu.migration import MigrateRequest
from multihost_migration.qemu.transport import Transport

BASE = {"vms": "vm1 vm2", "images": "image1", "image_name": "jeos", "create_image": "yes",
        "job_id": "j7", "images_base_dir": "/shared"}


def plan_of(**params: str) -> MigrationPlan:
    return MigrationPlan.from_params(Params(BASE, **params), mig_id="mig1", src="h1",
                                     dst="h2", vms=["vm1", "vm2"])


def test_defaults() -> None:
    plan = plan_of()
    assert (plan.transport, plan.listen, plan.offline, plan.parallel) == (
        Transport.TCP, "0.0.0.0", False, True)
    assert plan.timeouts == Timeouts(migration=300.0, sync=120.0, work=600.0, stall=60.0)
    assert plan.settings.empty and plan.tls is None
    assert plan.vm_names == ["vm1", "vm2"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.offline = True  # type: ignore[misc]


def test_every_knob_is_read() -> None:
    plan = plan_of(migration_protocol="exec", migration_listen="198.18.0.2",
                   migration_offline="yes", migrate_parallel="no", mig_timeout="30",
                   sync_timeout="12", work_timeout="40", mig_stall_timeout="5",
                   migration_capabilities="postcopy-ram", postcopy_after_passes="2",
                   **{"migrate_parameter_downtime-limit": "300"})
    assert (plan.transport, plan.listen, plan.offline, plan.parallel) == (
        Transport.EXEC, "198.18.0.2", True, False)
    assert plan.timeouts == Timeouts(migration=30.0, sync=12.0, work=40.0, stall=5.0)
    assert plan.settings.capabilities == ("postcopy-ram",)
    assert plan.settings.parameters == (("downtime-limit", "300"),)
    assert plan.settings.postcopy_after_passes == 2


@pytest.mark.parametrize("protocol", ["unix", "rdma", ""])
def test_only_transports_between_hosts(protocol: str) -> None:
    with pytest.raises(ConfigError, match="between hosts use tcp, exec or fd"):
        plan_of(migration_protocol=protocol)
    assert between_hosts("fd") is Transport.FD


def test_vm_params_name_created_disks_per_job_and_vm() -> None:
    plan = plan_of()
    vm1, vm2 = plan.vm("vm1"), plan.vm("vm2")
    assert vm1.params["image_name_image1"] == "jeos-j7-vm1"
    assert [str(i.path) for i in vm2.images] == ["/shared/jeos-j7-vm2.qcow2"]
    with pytest.raises(ConfigError, match="vm3"):
        plan.vm("vm3")


def test_tls_directory_is_the_jobs_own_unless_given() -> None:
    params = Params(BASE, migration_tls="x509")
    assert TLSPlan.from_params(params) == TLSPlan("x509", "/shared/mhm-tls-j7", own=True)
    plan = plan_of(migration_tls="x509")
    assert plan.vm("vm1").params["migration_tls_dir"] == "/shared/mhm-tls-j7"
    assert "migration_tls_dir" not in params   # nothing written into the params
    given = plan_of(migration_tls="psk", migration_tls_dir="/creds").tls
    assert given == TLSPlan("psk", "/creds", own=False)
    assert TLSPlan.from_params(Params(migration_tls="no")) is None
    with pytest.raises(ConfigError, match="migration_tls='ssl'"):
        plan_of(migration_tls="ssl")


def test_the_plan_does_not_write_into_the_params() -> None:
    params = Params(BASE, migration_tls="x509", migration_protocol="fd")
    before = dict(params)
    MigrationPlan.from_params(params, mig_id="mig1", src="h1", dst="h2", vms=["vm1"])
    assert params == before


def test_request_carries_transport_timeout_and_postcopy_passes() -> None:
    plan = plan_of(migration_protocol="exec", mig_timeout="45",
                   migration_capabilities="postcopy-ram", postcopy_after_passes="1")
    request = plan.request({"vm1": 4444})
    assert request == MigrateRequest("h2", {"vm1": 4444}, Transport.EXEC, timeout=45.0,
                                     postcopy_after_passes=1)
    assert request.port_of("vm1") == 4444
    assert plan.request(5555, wait=False, timeout=9.0).timeout == 9.0


def test_migration_data_builds_its_plan_once_from_its_params() -> None:
    mig = MigrationData(Params(BASE, migration_offline="yes"), "h1", "h1", "h2", ["vm1"],
                        "mig3")
    assert mig.plan is mig.plan and mig.plan.offline and mig.plan.mig_id == "mig3"
    given = plan_of()
    assert MigrationData(Params(), "h1", "h1", "h2", ["vm1"], "mig1", given).plan is given


def test_a_changed_param_reaches_the_next_plan_only() -> None:
    params = Params(BASE)
    first = MigrationPlan.from_params(params, mig_id="mig1", src="h1", dst="h2", vms=["vm1"])
    params["migration_protocol"] = "fd"
    second = MigrationPlan.from_params(params, mig_id="mig2", src="h1", dst="h2",
                                       vms=["vm1"])
    assert (first.transport, second.transport) == (Transport.TCP, Transport.FD)


def test_images_are_the_imagespec_rule(tmp_path: Path) -> None:
    plan = plan_of(images_base_dir=str(tmp_path), create_image="no")
    assert [i.path for i in plan.vm("vm1").images] == [tmp_path / "jeos.qcow2"]
