"""storage_mode = copy: a migration that carries its disks along.

Each host keeps its own images.  One migration, step by step (the sync
steps are the migration's own session, see migration.py):

    source                                  destination
    ------                                  -----------
    ------------------------- barrier "ready" -------------------------
    virtual size of every disk (qemu-img  -> "disk-sizes" -> a fresh target
      info -U)                                image of that size (same backing
                                              file: storage_copy_sync = top)
    boot the VMs, start_work                QEMU -incoming defer on the targets;
                                            nbd-server-start HOST:PORT (TLS:
                                            the migration's server creds),
                                            block-export-add each disk, writable
    ------------ "ports", then "nbd-ports": {vm: NBD port} ------------
    per VM: blockdev-add the NBD target,
      blockdev-mirror sync=full|top, wait
      until every disk is READY (target
      caught up; guest writes are mirrored
      from now on)
    migrate (RAM), capability pause-before-switchover on: at status
      pre-switchover the vCPUs are stopped, no write can come any more:
      block-job-cancel each READY mirror -> it copies what is still dirty
      and ends BLOCK_JOB_COMPLETED (no pivot: the source keeps its image);
      then migrate-continue -> the device state goes, the guest runs there
    ---------------------------- "migrated" -----------------------------
                                            incoming completed, guest runs:
                                            nbd-server-stop

Why pause-before-switchover and READY first (libvirt's NBD migration does
the same): a mirror that is READY only *follows* the guest's writes, with
some still dirty at any moment; QEMU's destination starts the guest as soon
as the device state arrives, so the last dirty blocks must reach it before
that, i.e. while the source is paused before the switchover.  Starting the
RAM migration only after READY keeps the bulk copy of the disk from
competing with the RAM stream's convergence.

A failure or a cancel on the source ends the mirrors (force) and the RAM
migration; the source guest runs on its own image, never switched.  The
destination then removes its partial target images (`finish_destination`,
`discard`).  `storage_copy_cancel_pct` cancels the migration on purpose
once the mirror has copied that % (MirrorCancelled): the cancel scenario.

TLS credentials: with shared storage the master makes them where every
host reads them; with copy they live in each host's own images directory,
so the master sends them over the sync channel, encrypted with a key
derived from the job's secret (which only ever travelled over SSH):
`tls_bundle` / `install_tls_bundle`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from multihost_migration import storage
from multihost_migration.errors import ConfigError, MigrationError, StorageError
from multihost_migration.imagespec import ImageSpec
from multihost_migration.plan import MigrationPlan
from multihost_migration.qemu.blockmirror import BlockMirror, NbdExport, NbdTarget
from multihost_migration.qemu.migration import PreSwitchoverHook
from multihost_migration.qemu.stats import MigrationStats
from multihost_migration.qemu.tls import CLIENT_ID, MANIFEST, SERVER_ID
from multihost_migration.qemu.transport import free_port
from multihost_migration.qemu.vm import VM, VMState
from multihost_migration.storage import Backing
from multihost_migration.sync import SyncData

log = logging.getLogger(__name__)

#: Seconds for the last dirty blocks once the guest is paused before the switchover.
COMPLETE_TIMEOUT = 120.0
#: Seconds between looks at the mirrors while waiting for READY.
POLL_INTERVAL = 0.1


class MirrorCancelled(MigrationError):
    """The migration was cancelled mid-mirror on purpose (storage_copy_cancel_pct)."""


def disks(plan: MigrationPlan, vm: str) -> list[tuple[ImageSpec, Optional[Backing]]]:
    """The disks of `vm` that travel (read-only ones must be on both hosts)."""
    vplan = plan.vm(vm)
    return [(spec, storage.backing_of(spec, vplan.params)) for spec in vplan.images
            if not spec.readonly]


class DiskCopy:
    """One migration's disk copy as this host sees it (source or destination)."""

    def __init__(self, plan: MigrationPlan, hostid: str,
                 address_of: Callable[[str], str]) -> None:
        if plan.storage.sync == "top":
            for vm in plan.vm_names:
                missing = [spec.name for spec, backing in disks(plan, vm) if backing is None]
                if missing:
                    raise ConfigError(f"{vm}: storage_copy_sync = top copies only the top "
                                      f"image; {missing} have no image_backing")
        for vm in plan.vm_names:
            given = [spec.name for spec, _ in disks(plan, vm) if not spec.create]
            if given:
                raise ConfigError(
                    f"{vm}: storage_mode = copy would overwrite the destination's own "
                    f"{given} with the copy: give them create_image = yes, or make the "
                    f"installed image their image_backing (storage_copy_sync = top)")
        self.plan = plan
        self.hostid = hostid
        self.address_of = address_of
        self.ports: dict[str, int] = {}
        self.exports: dict[str, NbdExport] = {}
        self.mirrors: dict[str, list[BlockMirror]] = {}
        self.targets: dict[str, list[ImageSpec]] = {}

    @property
    def is_src(self) -> bool:
        return self.hostid == self.plan.src

    # -- the sync steps (both hosts) -------------------------------------------

    def exchange_sizes(self, session: SyncData, timeout: float) -> None:
        """After "ready": the source tells the disks' virtual sizes, the
        destination creates its targets."""
        mine = None
        if self.is_src:
            mine = {vm: {spec.name: storage.virtual_size(spec.path)
                         for spec, _ in disks(self.plan, vm)} for vm in self.plan.vm_names}
        sizes = session.sync(mine, timeout=timeout, tag="disk-sizes")[self.plan.src]
        if not self.is_src:
            self.create_targets({vm: {k: int(v) for k, v in images.items()}
                                 for vm, images in dict(sizes).items()})

    def exchange_ports(self, session: SyncData, timeout: float) -> None:
        """After "ports": the destination tells each VM's NBD port."""
        ports = session.sync(self.ports or None, timeout=timeout, tag="nbd-ports")
        if self.is_src:
            self.ports = {vm: int(port) for vm, port in dict(ports[self.plan.dst]).items()}

    # -- destination -------------------------------------------------------------

    def create_targets(self, sizes: Mapping[str, Mapping[str, int]]) -> None:
        for vm in self.plan.vm_names:
            for spec, backing in disks(self.plan, vm):
                size = sizes.get(vm, {}).get(spec.name)
                if size is None:
                    raise StorageError(f"{vm}: the source sent no size for {spec.name}")
                storage.create_target(spec, size, backing if self.plan.storage.sync == "top"
                                      else None)
                self.targets.setdefault(vm, []).append(spec)

    def _tls(self, vm: VM, creds: str) -> Optional[str]:
        return creds if self.plan.storage.tls and vm.config.tls is not None else None

    def export(self, vm: VM) -> int:
        """nbd-server-start and a writable export of each disk; the port."""
        port = free_port(self.plan.listen)
        export = NbdExport(vm.qmp_link(), self._tls(vm, SERVER_ID))
        export.start(self.plan.listen, port)
        self.exports[vm.name] = export
        for spec, _ in disks(self.plan, vm.name):
            export.add(spec.name)
        self.ports[vm.name] = port
        return port

    def finish_destination(self, vms: Iterable[VM]) -> None:
        """After the migration: where the guest runs here, the export goes
        (nbd-server-stop); where it does not (failed, cancelled), the QEMU
        goes and so do the partial target images."""
        for vm in vms:
            export = self.exports.pop(vm.name, None)
            if vm.is_alive() and vm.state is VMState.RUNNING:
                if export is not None:
                    export.stop()
                continue
            self.discard([vm])

    def discard(self, vms: Iterable[VM]) -> None:
        """The migration to this host failed: stop the incoming QEMUs, remove
        the targets (a partial copy must never be taken for a disk)."""
        for vm in vms:
            if vm.state is not VMState.RUNNING:
                vm.destroy(gracefully=False)
            for spec in self.targets.pop(vm.name, []):
                storage.remove_image(spec)
                log.info("%s: partial target %s removed", vm.name, spec.path)

    # -- source ----------------------------------------------------------------------

    def start_mirrors(self, vm: VM) -> PreSwitchoverHook:
        """Mirror every disk of `vm` into the destination's exports and wait
        until all are READY; returns the hook that completes them at the
        pre-switchover pause.  On any failure the mirrors are aborted."""
        host = self.address_of(self.plan.dst)
        port = self.ports.get(vm.name)
        if port is None:
            raise MigrationError(f"{vm.name}: no NBD port from {self.plan.dst}")
        link = vm.qmp_link()
        mirrors = self.mirrors[vm.name] = [
            BlockMirror(link, spec.name, NbdTarget(host, port, spec.name),
                        sync=self.plan.storage.sync, tls_creds=self._tls(vm, CLIENT_ID),
                        speed=self.plan.storage.speed)
            for spec, _ in disks(self.plan, vm.name)]
        try:
            for mirror in mirrors:
                mirror.start()
            self._wait_ready(vm, mirrors)
        except BaseException:
            self.abort(vm)
            raise

        def complete(stats: MigrationStats) -> None:
            for mirror in mirrors:
                mirror.complete(COMPLETE_TIMEOUT)
            log.info("%s: disks complete on %s at the switchover (RAM %s MiB sent)",
                     vm.name, self.plan.dst, (stats.transferred or 0) >> 20)
        return complete

    def _wait_ready(self, vm: VM, mirrors: Sequence[BlockMirror]) -> None:
        deadline = time.monotonic() + self.plan.storage.ready_timeout
        cancel_at = self.plan.storage.cancel_at_pct
        while True:
            progress = [m.poll_ready() for m in mirrors]
            done = sum(p.offset for p in progress if p)
            total = sum(p.length for p in progress if p) or 1
            if cancel_at is not None and 100.0 * done / total >= cancel_at:
                self.abort(vm)
                raise MirrorCancelled(f"{vm.name}: migration cancelled mid-mirror at "
                                      f"{100.0 * done / total:.1f} % of the disks "
                                      f"({done >> 20} of {total >> 20} MiB)")
            if all(p is not None and p.ready for p in progress):
                if self.plan.storage.speed:
                    for mirror in mirrors:
                        mirror.set_speed(0)
                return
            if time.monotonic() >= deadline:
                raise MigrationError(f"{vm.name}: disks not READY within "
                                     f"{self.plan.storage.ready_timeout:.0f} s "
                                     f"({done >> 20} of {total >> 20} MiB copied)")
            time.sleep(POLL_INTERVAL)

    def abort(self, vm: VM) -> None:
        """End the mirrors of `vm` (a failed or cancelled migration)."""
        for mirror in self.mirrors.get(vm.name, []):
            mirror.abort()

    def stats(self, vm: str) -> list[dict[str, Any]]:
        return [mirror.stats() for mirror in self.mirrors.get(vm, [])]


# -- TLS credentials over the sync channel -------------------------------------


def _key(secret: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    return bytes(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                      info=b"mhm tls credentials bundle").derive(secret.encode()))


def tls_bundle(directory: Path, secret: str) -> dict[str, Any]:
    """The credentials in `directory`, each file encrypted (AES-GCM, the
    file name as associated data) under a key derived from the job secret."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    aead = AESGCM(_key(secret))
    files = {}
    for path in sorted(directory.iterdir()):
        if path.is_file():
            nonce = secrets.token_bytes(12)
            sealed = nonce + aead.encrypt(nonce, path.read_bytes(), path.name.encode())
            files[path.name] = {"mode": path.stat().st_mode & 0o777,
                                "data": base64.b64encode(sealed).decode()}
    return {"files": files}


def install_tls_bundle(directory: Path, bundle: Mapping[str, Any], secret: str) -> bool:
    """Write a `tls_bundle` into `directory` unless this host already sees
    the same credentials there (shared storage after all); True if written."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    aead = AESGCM(_key(secret))
    files: dict[str, tuple[int, bytes]] = {}
    for name, item in dict(bundle.get("files") or {}).items():
        if "/" in name or name in (".", ".."):
            raise StorageError(f"TLS bundle: refusing file name {name!r}")
        sealed = base64.b64decode(item["data"])
        try:
            files[name] = (int(item["mode"]) & 0o777,
                           aead.decrypt(sealed[:12], sealed[12:], name.encode()))
        except InvalidTag as err:
            raise StorageError(f"TLS bundle: {name} does not decrypt under this job's "
                               f"secret") from err
    if MANIFEST not in files:
        raise StorageError(f"TLS bundle without {MANIFEST}")
    manifest = directory / MANIFEST
    if manifest.is_file() and hashlib.sha256(manifest.read_bytes()).digest() == \
            hashlib.sha256(files[MANIFEST][1]).digest():
        return False
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        for name, (mode, data) in files.items():
            fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        os.chmod(tmp, 0o755)
        shutil.rmtree(directory, ignore_errors=True)
        os.rename(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("TLS credentials received over the sync channel into %s (%s)", directory,
             json.dumps(sorted(files)))
    return True


__all__ = ["DiskCopy", "MirrorCancelled", "disks", "install_tls_bundle", "tls_bundle"]
