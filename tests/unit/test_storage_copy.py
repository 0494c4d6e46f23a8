"""storage_mode = copy without QEMU: the plan, the TLS bundle, the checks,
preflight's advice, the lab's remount script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from multihost_migration.errors import ConfigError, StorageError
from multihost_migration.lab.local_storage import remount_script
from multihost_migration.params import Params
from multihost_migration.plan import MigrationPlan
from multihost_migration.qemu.tls import make_tls_credentials
from multihost_migration.server.preflight import Preflight
from multihost_migration.storage import StorageMode, StoragePlan, backing_of
from multihost_migration.storage_copy import DiskCopy, install_tls_bundle, tls_bundle


def _params(**extra: Any) -> Params:
    base = {"vms": "vm1", "images": "image1", "image_name": "disk", "create_image": "yes",
            "images_base_dir": "/img", "job_id": "j1", "hostid": "h2"}
    base.update(extra)
    return Params(base)


def _plan(**extra: Any) -> MigrationPlan:
    return MigrationPlan.from_params(_params(**extra), mig_id="mig1", src="h1", dst="h2",
                                     vms=["vm1"])


def test_storage_plan_defaults_and_parsing() -> None:
    assert StoragePlan.from_params({}) == StoragePlan()
    plan = StoragePlan.from_params({"storage_mode": "copy", "storage_copy_sync": "top",
                                    "storage_copy_speed": "8M",
                                    "storage_copy_cancel_pct": "30",
                                    "storage_copy_tls": "no"})
    assert plan.mode is StorageMode.COPY and plan.copy and plan.sync == "top"
    assert plan.speed == 8 << 20 and plan.cancel_at_pct == 30.0 and not plan.tls
    for bad in ({"storage_mode": "nfs"}, {"storage_copy_sync": "all"},
                {"storage_copy_speed": "fast"}, {"storage_copy_ready_timeout": "x"}):
        with pytest.raises(ConfigError):
            StoragePlan.from_params(bad)


def test_copy_plan_pauses_before_switchover_and_names_disks_per_host() -> None:
    shared, copy = _plan(), _plan(storage_mode="copy")
    assert "pause-before-switchover" not in shared.settings.capabilities
    assert copy.settings.capabilities == ("pause-before-switchover",)
    assert shared.vm("vm1").images[0].path == Path("/img/disk-j1-vm1.qcow2")
    assert copy.vm("vm1").images[0].path == Path("/img/disk-j1-h2-vm1.qcow2")
    with_multifd = _plan(storage_mode="copy", migration_capabilities="multifd")
    assert with_multifd.settings.capabilities == ("multifd", "pause-before-switchover")


def test_backing_of() -> None:
    spec = _plan().vm("vm1").images[0]
    assert backing_of(spec, {}) is None
    backing = backing_of(spec, {"image_backing": "base.qcow2", "images_base_dir": "/img",
                                "image_backing_create": "yes"})
    assert backing is not None and backing.path == Path("/img/base.qcow2")
    assert backing.create and backing.fill == 0x5A and backing.fmt == "qcow2"


def test_disk_copy_refuses_images_it_would_overwrite() -> None:
    with pytest.raises(ConfigError, match="would overwrite the destination's own"):
        DiskCopy(_plan(storage_mode="copy", create_image="no"), "h2", str)
    with pytest.raises(ConfigError, match="no image_backing"):
        DiskCopy(_plan(storage_mode="copy", storage_copy_sync="top"), "h2", str)
    DiskCopy(_plan(storage_mode="copy"), "h2", str)


def test_tls_bundle_round_trip(tmp_path: Path) -> None:
    made = make_tls_credentials(tmp_path / "a" / "tls", "x509", ["h1", "198.18.0.11"])
    bundle = tls_bundle(made.directory, "job-secret")
    assert "BEGIN" not in repr(bundle)   # nothing readable travels
    target = tmp_path / "b" / "tls"
    assert install_tls_bundle(target, bundle, "job-secret")
    for name in ("ca-cert.pem", "server-key.pem", "mhm-tls.json"):
        assert (target / name).read_bytes() == (made.directory / name).read_bytes()
    assert (target / "server-key.pem").stat().st_mode & 0o777 == 0o600
    assert not install_tls_bundle(target, bundle, "job-secret")   # already there
    with pytest.raises(StorageError, match="does not decrypt"):
        install_tls_bundle(tmp_path / "c", bundle, "another-secret")


def test_preflight_share_hint_names_commands_paths_and_copy() -> None:
    pre = Preflight({}, [{"shortname": "integrity.once"}], "python3",
                    {"h1": "198.18.0.11", "h2": "198.18.0.12"})
    hint = pre.share_hint(["h1", "h2"], "/var/lib/virt_test/images")
    assert "on h1: apt-get install -y nfs-kernel-server" in hint
    assert ("'/var/lib/virt_test/images 198.18.0.12(rw,sync,no_root_squash,"
            "no_subtree_check)' >> /etc/exports && exportfs -ra") in hint
    assert ("on h2: apt-get install -y nfs-common && mount -t nfs "
            "198.18.0.11:/var/lib/virt_test/images /var/lib/virt_test/images") in hint
    assert "storage_mode = copy" in hint


def test_remount_script() -> None:
    script = remount_script({"images": Path("/var/lib/mhm-lab/local/h1/images")})
    assert "umount /var/lib/virt_test/images" in script
    assert script.endswith("mount --bind /var/lib/mhm-lab/local/h1/images "
                           "/var/lib/virt_test/images")
