"""storage_mode = copy with real QEMUs on this host: the destination's NBD
export, the source's mirror, READY before the RAM migration, completion at
the pre-switchover pause (TCG, 127.0.0.1; run under the lab lock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from multihost_migration.guest.checks import DiskPattern
from multihost_migration.params import Params
from multihost_migration.plan import MigrationPlan
from multihost_migration.qemu import VM, VMState
from multihost_migration.qemu.tls import make_tls_credentials
from multihost_migration.qemu.transport import Transport
from multihost_migration.storage import create_image, virtual_size
from multihost_migration.storage_copy import DiskCopy, MirrorCancelled

pytestmark = [pytest.mark.qemu]

BOOT_TIMEOUT = 120.0
LOOPBACK = "127.0.0.1"
SEED, MIB = 4321, 8
#: 4 MiB of "MHMCOPY" lines at 16 MiB, and the check: bytes that are not
#: part of them, bytes read
LATE_WRITE = ("yes MHMCOPY | dd of=/dev/vda bs=64k seek=256 count=64 iflag=fullblock "
              "oflag=direct conv=fsync")
LATE_CHECK = ("dd if=/dev/vda bs=64k skip=256 count=64 iflag=direct 2>/dev/null > /tmp/late; "
              "echo $(tr -d 'MHCOPY\\n' < /tmp/late | wc -c) $(wc -c < /tmp/late)")


def _plan(guest: dict[str, Any], images: Path, **extra: Any) -> MigrationPlan:
    images.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in guest.items() if k != "image_path"}
    params.update({"vms": "vm1", "images": "image1", "image_name": "disk",
                   "images_base_dir": str(images), "create_image": "yes",
                   "image_size": "64M", "storage_mode": "copy",
                   "migration_listen": LOOPBACK, "job_id": "func"}, **extra)
    return MigrationPlan.from_params(Params(params), mig_id="mig1", src="h1", dst="h2",
                                     vms=["vm1"])


class Pair:
    """A source and a destination QEMU, each with its own images directory."""

    def __init__(self, guest: dict[str, Any], tmp: Path, **extra: Any) -> None:
        self.src_plan = _plan(guest, tmp / "h1", **extra)
        self.dst_plan = _plan(guest, tmp / "h2", **extra)
        self.src_disk = self.src_plan.vm("vm1").images[0]
        self.dst_disk = self.dst_plan.vm("vm1").images[0]
        create_image(self.src_disk)
        self.src = VM("vm1", self.src_plan.vm("vm1").params, tmp / "src",
                      address_of={"h2": LOOPBACK}.get)
        self.dst = VM("vm1", self.dst_plan.vm("vm1").params, tmp / "dst")
        self.src_copy = DiskCopy(self.src_plan, "h1", lambda host: LOOPBACK)
        self.dst_copy = DiskCopy(self.dst_plan, "h2", lambda host: LOOPBACK)

    def boot_and_write(self) -> None:
        self.src.create()
        DiskPattern(self.src.wait_for_login(BOOT_TIMEOUT)).write(SEED, MIB)

    def export(self) -> int:
        """Destination: target of the source's size, QEMU incoming, NBD export."""
        size = virtual_size(self.src_disk.path)
        self.dst_copy.create_targets({"vm1": {"image1": size}})
        self.dst.create(incoming=True)
        self.dst.apply_migration_settings(self.dst_plan.settings)
        self.dst_copy.export(self.dst)
        self.src_copy.ports = dict(self.dst_copy.ports)
        return self.dst.start_incoming(Transport.TCP, LOOPBACK, 0)

    def close(self) -> None:
        try:
            self.src.destroy(gracefully=False)
        finally:
            self.dst.destroy(gracefully=False)


@pytest.fixture
def pair_factory(guest_params: dict[str, Any], tmp_path: Path) -> Iterator[Any]:
    made: list[Pair] = []

    def make(**extra: Any) -> Pair:
        made.append(Pair(guest_params, tmp_path, **extra))
        return made[-1]
    yield make
    for pair in made:
        pair.close()


def _migrate_with_copy(pair: Pair) -> None:
    pair.boot_and_write()
    port = pair.export()
    pair.src.apply_migration_settings(pair.src_plan.settings)
    session = pair.src.wait_for_login(30)
    # written while the mirror runs (and maybe on after the switchover): not lost
    session.sendline(f"(sleep 1; {LATE_WRITE}) >/dev/null 2>&1 &")
    hook = pair.src_copy.start_mirrors(pair.src)
    stats = pair.src.migrate(pair.src_plan.request({"vm1": port}, timeout=120,
                                                   on_pre_switchover=hook))
    assert stats.status == "completed"
    assert pair.dst.wait_for_migration_incoming(60) == "completed"
    pair.dst_copy.finish_destination([pair.dst])
    assert pair.dst.qmp("query-block-exports") == []
    [mirror] = pair.src_copy.stats("vm1")
    assert mirror["length"] == 64 << 20 and mirror["ready_s"] is not None
    session = pair.dst.wait_for_login(30)
    session.cmd("while pidof dd >/dev/null; do sleep 0.2; done", timeout=60)
    DiskPattern(session).verify(SEED, MIB)
    assert session.cmd(LATE_CHECK).strip() == "0 4194304"
    assert pair.dst.state is VMState.RUNNING


def test_copy_mirror_then_migrate_identical_images(pair_factory: Any) -> None:
    pair = pair_factory()
    assert "pause-before-switchover" in pair.src_plan.settings.capabilities
    _migrate_with_copy(pair)


def test_copy_over_tls_x509(pair_factory: Any, tmp_path: Path) -> None:
    tls = make_tls_credentials(tmp_path / "tls", "x509", [LOOPBACK, "localhost"])
    pair = pair_factory(migration_tls="x509", migration_tls_dir=str(tls.directory))
    _migrate_with_copy(pair)
    log = pair.dst.qemu_log_path.read_text()
    assert "error" not in log.lower(), log


def test_cancel_mid_mirror_keeps_source_and_removes_target(pair_factory: Any) -> None:
    pair = pair_factory(storage_copy_speed="8M", storage_copy_cancel_pct="20")
    pair.boot_and_write()
    pair.export()
    assert pair.dst_disk.path.exists()
    with pytest.raises(MirrorCancelled, match="cancelled mid-mirror"):
        pair.src_copy.start_mirrors(pair.src)
    assert pair.src.qmp("query-block-jobs") == []
    assert not any(n.get("node-name", "").startswith("mhm-nbd")
                   for n in pair.src.qmp("query-named-block-nodes"))
    assert pair.src.query_status() == "running"
    DiskPattern(pair.src.wait_for_login(30)).verify(SEED, MIB)
    pair.dst_copy.discard([pair.dst])
    assert not pair.dst.is_alive() and not pair.dst_disk.path.exists()
