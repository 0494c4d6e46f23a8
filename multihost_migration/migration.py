"""MultihostMigration: the user API for multi-host migration scenarios.

Every host runs the same scenario code with its own `hostid`; the roles of a
migration (source, destination) are decided by comparing `hostid` with the
`srchost`/`dsthost` arguments.  A migration, step by step:

    source                               destination
    ------                               -----------
                                         destroy stale copies of the VMs
    ---------------- barrier "ready" -----------------
    boot the VMs if not running          start QEMU with -incoming defer,
    start_work(mig_data)                 set capabilities, migrate-incoming
    ---------- sync: destination sends {vm: port} -----------
    migrate_vms_src(): QMP migrate
    ---------- sync: both send their migration status ----------
                                         wait_vms_dest(): incoming ended
    check_vms_src(): QEMU postmigrate,   check_vms_dst(): guest runs
    then stop it                         check_work(mig_data)
    ------------------ barrier "checked" --------------------

A failure on either side aborts the migration's sync session: the peer is
released at once with SyncAborted carrying the original error.  A peer busy
elsewhere (booting, inside the guest) learns it from its AbortWatch thread,
which stops its VMs so that the work in progress ends within moments.
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import socket
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from multihost_migration.abort_watch import AbortWatch
from multihost_migration.errors import (ConfigError, MigrationError, PeerFailed, SyncAborted,
                                        SyncError, VMDiedError)
from multihost_migration.imagespec import ImageSpec
from multihost_migration.netcheck import NetworkCheckError, NetworkChecks
from multihost_migration.params import Params
from multihost_migration.plan import MigrationPlan, TLSPlan, vm_params, vm_plans
from multihost_migration.poller import Poller
from multihost_migration.qemu.env import Env
from multihost_migration.qemu.stats import MigrationStats, ram_progress_pct
from multihost_migration.qemu.tls import make_tls_credentials
from multihost_migration.qemu.transport import Transport
from multihost_migration.qemu.vm import VM
from multihost_migration import relay, rootcause, storage
from multihost_migration.rootcause import StallLog
from multihost_migration.storage import StoragePlan
from multihost_migration.storage_copy import DiskCopy, install_tls_bundle, tls_bundle
from multihost_migration.sync import SyncData, SyncServer
from multihost_migration.verdicts import Interrupted, abort_kind

log = logging.getLogger(__name__)
# Phases for the controller's live display; the client job forwards them.
progress = logging.getLogger("multihost_migration.progress")
PROGRESS_INTERVAL = 0.5

Work = Callable[["MigrationData"], None]


def _abort_quietly(session: SyncData, reason: str, kind: str = "failed") -> None:
    """Best effort: the error being reported matters more than a failed abort
    (the server may be gone already, its peers then released anyway)."""
    try:
        session.abort(reason, kind=kind)
    except SyncError as err:
        log.warning("could not abort sync session %s: %s", session.session_id, err)


_WAITED_FOR = re.compile(r"timed out after [\d.]+ s waiting for ([\w.:-]+(?:, [\w.:-]+)*)")


def waited_for(reason: str) -> list[str]:
    """The hosts a peer's SyncBarrierTimeout (as text, in its abort reason)
    names as the ones it waited for in vain."""
    found = _WAITED_FOR.search(reason)
    return found.group(1).split(", ") if found else []


class _MigrationProgress(Poller):
    """While a migration runs: its RAM progress for the live display every
    PROGRESS_INTERVAL s, and a watchdog that cancels it when no byte has
    moved for `stall_timeout` s, or when it is still in setup (not connected)
    after as long (QEMU itself would wait for TCP to give up, minutes on a
    partitioned network or a blocked port)."""

    interval = PROGRESS_INTERVAL

    def __init__(self, vm: VM, stall_timeout: float = 60.0,
                 stalls: Optional[StallLog] = None, key: str = "") -> None:
        super().__init__(f"progress-{vm.name}")
        self.vm = vm
        self.stall_timeout = stall_timeout
        self.stalled = False
        self.in_setup = False     # stalled before the stream connected
        self.percent: Optional[float] = None
        self._stalls, self._key = stalls, key or vm.name
        self._last, self._since = -1, time.monotonic()

    def poll(self) -> bool:
        info = self.vm.query_migrate()
        stats = MigrationStats.from_query(info)
        if stats.status == "setup":
            return self._watch_setup()
        if stats.status not in ("active", "postcopy-active", "device"):
            return True
        done = ram_progress_pct(info)
        if done is not None:
            self.percent = done
            progress.info("migrating\t%s\t%.1f\t%s", self.vm.name, done,
                          stats.throughput_mbps or "")
        moved = stats.transferred or 0
        if self._stalls is not None:
            self._stalls.progress(self._key, moved, done)
        if moved != self._last:
            self._last, self._since = moved, time.monotonic()
            return True
        if time.monotonic() - self._since <= self.stall_timeout:
            return True
        log.error("%s: no progress for %.0f s: cancelling the migration",
                  self.vm.name, self.stall_timeout)
        return self._cancel()

    def _watch_setup(self) -> bool:
        """Setup lasts until the stream connects: as long as a stall, it is one."""
        if time.monotonic() - self._since <= self.stall_timeout:
            return True
        log.error("%s: still in setup (not connected) after %.0f s: cancelling the migration",
                  self.vm.name, self.stall_timeout)
        self.in_setup = True
        return self._cancel()

    def _cancel(self) -> bool:
        self.stalled = True
        self.vm.cancel_migration(wait=False)
        return False


class _FdIncoming:
    """fd transport, destination: a socket of ours accepts the source's
    connection and QEMU reads the stream from its descriptor (getfd)."""

    def __init__(self, vm: VM, listen: str, timeout: float) -> None:
        self.vm = vm
        self._server = socket.create_server((listen, 0))
        self._server.settimeout(timeout)
        self.port = int(self._server.getsockname()[1])
        self.error: Optional[BaseException] = None
        threading.Thread(target=self._accept, daemon=True, name=f"fd-in-{vm.name}").start()

    def _accept(self) -> None:
        try:
            with self._server:
                conn, _ = self._server.accept()
            with conn:
                self.vm.start_incoming(Transport.FD, fd=conn.fileno())
        except BaseException as err:  # reported through the migration's status
            log.error("%s: fd incoming: %s", self.vm.name, err)
            self.error = err


class MigrationData:
    """What one migration is about, as seen from this host.

    `plan` is the migration's params read once (plan.py); `params` are the
    params it was built from, for scenario code (the legacy user API)."""

    def __init__(self, params: Params, hostid: str, srchost: str, dsthost: str,
                 vms_name: Sequence[str], mig_id: str,
                 plan: Optional[MigrationPlan] = None) -> None:
        self.params = params
        self.hostid = hostid
        self.src = srchost
        self.dst = dsthost
        self.vms_name = list(vms_name)
        self.mig_id = mig_id
        self.vms: list[VM] = []
        self.vm_ports: dict[str, int] = {}
        self.stats: dict[str, dict[str, Any]] = {}
        self._plan = plan
        #: storage_mode = copy: this host's side of the disk copy (storage_copy.py)
        self.disk_copy: Optional[DiskCopy] = None

    @property
    def plan(self) -> MigrationPlan:
        """The plan (built from `params` on first use when none was given)."""
        if self._plan is None:
            self._plan = MigrationPlan.from_params(self.params, mig_id=self.mig_id,
                                                   src=self.src, dst=self.dst,
                                                   vms=self.vms_name)
        return self._plan

    def is_src(self) -> bool:
        return self.hostid == self.src

    def is_dst(self) -> bool:
        return self.hostid == self.dst

    def __repr__(self) -> str:
        return f"<MigrationData {self.mig_id} {self.src}->{self.dst} vms={self.vms_name}>"


class MigrationThread(threading.Thread):
    """A migration running in the background; join() re-raises its error."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(target=target, name=name, daemon=True)
        self._body = target
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self._body()
        except BaseException as err:  # noqa: B036 - handed to join()
            self.error = err

    def join(self, timeout: Optional[float] = None) -> None:
        super().join(timeout)
        if self.is_alive():
            raise MigrationError(f"{self.name} still running after {timeout} s")
        if self.error is not None:
            err, self.error = self.error, None
            raise err


class MultihostMigration:
    """Base class of multi-host migration scenarios; see the module docstring."""

    def __init__(self, test: Any, params: Params, env: Env,
                 preprocess_env: bool = True) -> None:
        self.test = test
        self.params = params
        self.env = env
        self.hosts: list[str] = list(params.get("hosts") or [])
        self.hostid = str(params.get("hostid", ""))
        if len(self.hosts) < 2 or self.hostid not in self.hosts:
            raise ConfigError(f"params hosts={self.hosts!r} hostid={self.hostid!r}: "
                              "need at least two hosts, and hostid among them")
        self.master_id = self.hosts[0]
        self.vms = params.objects("vms")
        self.login_timeout = params.get_float("login_timeout", 360.0)
        self.mig_timeout = params.get_float("mig_timeout", 300.0)
        self.sync_timeout = params.get_float("sync_timeout", 120.0)
        # How long a host waits for its peer's start_work/check_work.  They
        # bound each of their steps (logins, guest commands), several in a
        # row; this only catches a peer stuck without a deadline.
        self.work_timeout = params.get_float("work_timeout", 600.0)
        self.job_id = str(params.get("job_id", "mhm"))
        self._secret = str(params.get("sync_secret", ""))
        self._sync_port = params.get_int("sync_port", 13234)
        self._counter = itertools.count(1)
        self._counter_lock = threading.Lock()
        self.outputdir = Path(getattr(test, "outputdir", "."))
        # Shared with the client job's test object, which reports them.
        self.migrations: list[MigrationData] = getattr(test, "migrations", [])
        # TLS credentials (kind, directory): the master makes them; when the
        # params name no directory they are the job's own, removed at the end.
        self.tls: Optional[TLSPlan] = TLSPlan.from_params(params)
        # shared: the master creates the disks; copy: each host its own
        self.storage = StoragePlan.from_params(params)
        self._disk_images: Optional[list[ImageSpec]] = None
        self.sync_server: Optional[SyncServer] = None
        self._sync_sessions: "weakref.WeakSet[SyncData]" = weakref.WeakSet()
        self._stalls = StallLog()
        self._relay_stop: Callable[[], None] = lambda: None
        self._main_sync = self._sync_session("main", self.hosts)  # no I/O yet
        self._watch = AbortWatch(self.address_of(self.master_id), self.hostid, self.hosts,
                                 f"{self.job_id}:watch", self._sync_port, self._secret,
                                 lifetime=params.get_float("test_timeout", 1800.0) + 600.0,
                                 on_abort=self._peer_aborted)
        watching = False
        try:
            if self.hostid == self.master_id:
                self.sync_server = SyncServer("0.0.0.0", self._sync_port, self._secret)
                self.sync_server.start()
            self._watch.start()
            watching = True
            self._relay_stop = relay.listen(self._relayed)
            if preprocess_env:
                self._prepare_disks()
        except BaseException as err:  # nobody gets an object to clean up: do it here
            self._unwind_init(f"{type(err).__name__} on {self.hostid}: {err}", watching,
                              abort_kind(err))
            raise

    def _unwind_init(self, reason: str, watching: bool, kind: str) -> None:
        """__init__ failed: release the peers with `reason`, stop the watch
        thread, close the sync client and stop the sync server, each step
        even if one before it failed."""
        self._relay_stop()
        try:
            if watching:  # the sync server is up: tell the peers at once
                _abort_quietly(self._main_sync, reason, kind)
                self._watch.abort(reason, kind)  # releases this host's own watcher too
                self._watch.stop()
        finally:
            self._main_sync.close()
            if self.sync_server is not None:
                self.sync_server.stop()

    # -- sync helpers ---------------------------------------------------------

    def address_of(self, hostid: str) -> str:
        return str(self.params.get(f"address_{hostid}", hostid))

    def _sync_session(self, name: str, hosts: Sequence[str]) -> SyncData:
        session = SyncData(self.address_of(self.master_id), self.hostid, list(hosts),
                           session_id=f"{self.job_id}:{name}", port=self._sync_port,
                           secret=self._secret)
        self._sync_sessions.add(session)   # a relayed peer failure interrupts its waits
        return session

    def sync(self, data: Any = None, tag: Optional[str] = None,
             timeout: Optional[float] = None) -> dict[str, Any]:
        """Exchange data with every host of the test: {hostid: data}."""
        return self._main_sync.sync(data, timeout=timeout or self.sync_timeout, tag=tag)

    def warn(self, message: str) -> None:
        """Something the user must see although the test passes (a known
        defect of the hypervisor, a check that could not be made): logged,
        and this host's verdict becomes WARN with `message` as its reason."""
        log.warning("WARN: %s", message)
        warnings = getattr(self.test, "warnings", None)
        if isinstance(warnings, list):
            warnings.append(message)

    def abort(self, reason: str, kind: str = "failed") -> None:
        """Release every peer at once: they raise SyncAborted with `reason`
        (`kind` "interrupted" when this host stops on a signal)."""
        _abort_quietly(self._main_sync, reason, kind)
        self._watch.abort(reason, kind)

    def _relayed(self, report: relay.PeerReport) -> None:
        """The controller reports that a peer failed or stopped answering: as
        a sync abort would, stop the local work, and end every wait on the
        sync server (which may be the unreachable peer itself)."""
        if report.host == self.hostid:
            return
        err = PeerFailed(report.host, report.reason,
                         unresponsive=report.kind == "unresponsive")
        self._watch.fire(err)
        for session in list(self._sync_sessions):
            session.interrupt(err)

    def _own_vms(self) -> list[VM]:
        """Every VM this host started in this test, stopped ones included."""
        seen: dict[int, VM] = {}
        for vm in [*self.env.get_all_vms(), *(v for m in self.migrations for v in m.vms)]:
            seen.setdefault(id(vm), vm)
        return list(seen.values())

    def _local_root_cause(self, peer: SyncAborted) -> None:
        """A peer's abort reached this host: raise what happened here first
        instead, if it explains more (this host's QEMU died; an interruption)."""
        if rootcause.interrupted(peer):
            raise Interrupted(f"interrupted: {peer.host} was interrupted ({peer.reason})") \
                from peer
        died = rootcause.qemu_death(self._own_vms(), self.hostid,
                                    context=f"then {peer}")
        if died is not None:
            raise died from peer

    def _peer_aborted(self, err: SyncAborted) -> None:
        """AbortWatch, when a peer failed: stop the local VMs now, so that
        whatever this host waits for in them fails at once."""
        progress.info("aborting: %s failed", err.host)
        self.env.destroy_all(gracefully=False)

    def _blame(self, err: BaseException) -> str:
        """For a local error: raise the peer's failure instead if that is
        what stopped this host's work (the verdict must carry it, not the
        local symptom, a console gone); else the reason to tell the peers.

        A peer that gave up waiting for this host is the exception: what
        this host was busy with is the story, so both go into the verdict."""
        died = rootcause.qemu_death(self._own_vms(), self.hostid,
                                    context=f"seen as {type(err).__name__}: {err}")
        if died is not None and not isinstance(err, VMDiedError):
            raise died from err
        peer = self._watch.fired
        if peer is None:
            return f"{type(err).__name__} on {self.hostid}: {err}"
        self._local_root_cause(peer)       # the peer was interrupted: so are we
        stalls = self._stalls.notes()
        if stalls:   # lost contact mid-migration: say where it stopped moving
            raise MigrationError(f"{peer}; {'; '.join(stalls)}") from err
        if self.hostid in waited_for(peer.reason):
            raise MigrationError(f"{peer.host} gave up waiting for {self.hostid} "
                                 f"({peer.reason}); {self.hostid} was still busy and got "
                                 f"{type(err).__name__}: {err}") from err
        raise peer from err

    # -- disks ----------------------------------------------------------------

    def vm_params(self, name: str) -> Params:
        """A VM's params (a copy); disks this test creates get names unique to
        the job, so parallel pairs on the same shared storage never share a
        disk (plan.vm_params)."""
        return vm_params(self.params, name, self.tls)

    def _images(self) -> list[ImageSpec]:
        """The test's disks, read once (cleanup removes those prepared)."""
        if self._disk_images is None:
            self._disk_images = [image for vm in vm_plans(self.params, self.vms)
                                 for image in vm.images]
        return self._disk_images

    def _prepare_disks(self) -> None:
        """Master creates the disks; all hosts check they see the same files."""
        if self.storage.copy:
            self._prepare_own_disks()
            return
        images = self._images()
        progress.info("disk prep")
        if self.hostid == self.master_id:
            for image in images:
                if image.create:
                    storage.create_image(image)
            self._make_tls_credentials()
        self._main_sync.barrier("disks-created", timeout=self.sync_timeout)
        seen = {}
        for image in images:
            storage.check_image(image)
            seen[str(image.path)] = storage.fingerprint(image.path)
        views = self._main_sync.sync(seen, timeout=self.sync_timeout, tag="disks-checked")
        for host, view in views.items():
            if view != seen:
                raise MigrationError(f"shared storage is not coherent: {self.hostid} sees "
                                     f"{seen}, {host} sees {view}")

    def _prepare_own_disks(self) -> None:
        """storage_mode = copy: every host creates the test's disks (and
        their backing files) for itself; the master's TLS credentials reach
        the others over the sync channel, encrypted (storage_copy.py)."""
        progress.info("disk prep")
        self._create_backings()
        for vm in vm_plans(self.params, self.vms):
            for image in vm.images:
                if image.create:
                    storage.create_image(image, backing=storage.backing_of(image, vm.params))
        bundle = None
        if self.hostid == self.master_id and self.tls is not None:
            self._make_tls_credentials()
            bundle = tls_bundle(Path(self.tls.directory), self._secret)
        sent = self._main_sync.sync(bundle, timeout=self.sync_timeout, tag="disks-created")
        if self.tls is not None and self.hostid != self.master_id:
            install_tls_bundle(Path(self.tls.directory), sent[self.master_id], self._secret)
        self._main_sync.barrier("disks-checked", timeout=self.sync_timeout)

    def _create_backings(self) -> None:
        """The backing files the cfg asks the test to create: the master's
        first; a host that then sees the master's file (storage shared after
        all, or an identical copy) keeps it instead of writing it again
        under a running peer."""
        wanted = [(image, backing) for vm in vm_plans(self.params, self.vms)
                  for image in vm.images
                  for backing in [storage.backing_of(image, vm.params)]
                  if backing is not None and backing.create]
        made: dict[str, str] = {}
        if self.hostid == self.master_id:
            for image, backing in wanted:
                storage.create_backing(image, backing)
                made[str(backing.path)] = storage.fingerprint(backing.path)
        master = self._main_sync.sync(made, timeout=self.sync_timeout,
                                      tag="backings-created")[self.master_id]
        if self.hostid == self.master_id:
            return
        for image, backing in wanted:
            path = backing.path
            if path.is_file() and storage.fingerprint(path) == master.get(str(path)):
                log.info("%s: backing %s as the master made it: kept", image.vm, path)
            else:
                storage.create_backing(image, backing)

    def _make_tls_credentials(self) -> None:
        """Master: certificates (or a PSK) for this job, on shared storage,
        naming every host by id and address."""
        if self.tls is None:
            return
        names = set(self.hosts) | {self.address_of(h) for h in self.hosts}
        make_tls_credentials(self.tls.directory, self.tls.kind, sorted(names))
        log.info("TLS (%s) credentials in %s", self.tls.kind, self.tls.directory)

    # -- VMs ------------------------------------------------------------------

    def vm_params_for(self, mig_data: MigrationData, name: str, role: str) -> dict[str, Any]:
        """The params a VM of this migration is started with on this host
        (`role` "src" or "dst"): the plan's, as a copy a subclass may adjust."""
        return dict(mig_data.plan.vm(name).params)

    def _new_vm(self, name: str, role: str, mig_data: MigrationData) -> VM:
        log_dir = self.outputdir / name / f"{mig_data.mig_id}-{role}"
        return VM(name, self.vm_params_for(mig_data, name, role), log_dir, self.address_of)

    def prepare_vms(self, mig_data: MigrationData) -> None:
        """Source: boot the VMs that are not running yet."""
        mig_data.vms = []
        for name in mig_data.vms_name:
            vm = self.env.get_vm(name)
            if vm is None or not vm.is_alive():
                progress.info("boot\t%s", name)
                vm = self._new_vm(name, "src", mig_data)
                self.env.register_vm(name, vm)  # before create: cleanup must see it
                vm.create()
            mig_data.vms.append(vm)

    def destroy_stale_vms(self, mig_data: MigrationData) -> None:
        """Destination: a VM of the same name still here would hold the disk."""
        for name in mig_data.vms_name:
            vm = self.env.unregister_vm(name)
            if vm is not None:
                vm.destroy(gracefully=False)

    # -- hooks a subclass may override ---------------------------------------

    def before_migration(self, mig_data: MigrationData) -> None:
        """Runs on both hosts before anything else of a migration."""

    def post_migration(self, mig_data: MigrationData) -> None:
        """Runs on both hosts once a migration is checked."""

    def _hook_before(self, mig_data: MigrationData) -> None:
        """Where before_migration runs (a layer with other hook semantics,
        such as legacy/, moves it)."""
        self.before_migration(mig_data)

    def _hook_after(self, mig_data: MigrationData) -> None:
        """Where post_migration runs (see _hook_before)."""
        self.post_migration(mig_data)

    def _ports_exchanged(self, mig_data: MigrationData) -> None:
        """Both hosts, once the destination's ports reached the source,
        before the source migrates (nothing here; legacy/ runs its
        before_migration then)."""

    def migrate_vms_dest(self, mig_data: MigrationData) -> dict[str, int]:
        """Destination: start the VMs waiting for the stream; return their ports."""
        mig_data.vms = []
        plan = mig_data.plan
        for name in mig_data.vms_name:
            vm = self._new_vm(name, "dst", mig_data)
            self.env.register_vm(name, vm)
            vm.create(incoming=True)
            vm.apply_migration_settings(plan.settings)
            mig_data.vms.append(vm)
            if mig_data.disk_copy is not None:   # the targets, exported over NBD
                mig_data.disk_copy.export(vm)
            if plan.transport is Transport.FD:
                mig_data.vm_ports[name] = _FdIncoming(vm, plan.listen,
                                                      plan.timeouts.migration).port
            else:
                mig_data.vm_ports[name] = vm.start_incoming(plan.transport, plan.listen, 0)
        return mig_data.vm_ports

    def migrate_vms_src(self, mig_data: MigrationData) -> None:
        """Source: migrate the VMs of the migration, all at once (each in its
        own thread) unless `migrate_parallel = no`; the first error wins."""
        vms = mig_data.vms
        if len(vms) == 1 or not mig_data.plan.parallel:
            for vm in vms:
                self._migrate_one(vm, mig_data)
            return
        threads = [MigrationThread(lambda vm=vm: self._migrate_one(vm, mig_data),  # type: ignore[misc]
                                   name=f"{mig_data.mig_id}-{vm.name}") for vm in vms]
        for thread in threads:
            thread.start()
        errors = []
        for thread in threads:
            try:
                thread.join()
            except BaseException as err:  # noqa: B036 - all joined, first re-raised
                errors.append(err)
        if errors:
            raise errors[0]

    def _migrate_one(self, vm: VM, mig_data: MigrationData) -> None:
        plan = mig_data.plan
        vm.apply_migration_settings(plan.settings)
        port = mig_data.vm_ports[vm.name]
        log.info("%s: migrating to %s port %s over %s", vm.name, mig_data.dst, port,
                 plan.transport.value)
        key = f"{vm.name} to {mig_data.dst}"
        copy, extra = mig_data.disk_copy, {}
        if copy is not None:   # disks READY first; they complete at the pre-switchover
            extra["on_pre_switchover"] = copy.start_mirrors(vm)
        with _MigrationProgress(vm, plan.timeouts.stall, self._stalls, key) as watch:
            try:
                if plan.transport is Transport.FD:
                    # The stream rides on a socket this process opened: QEMU
                    # gets its descriptor (getfd), ours closes afterwards.
                    with socket.create_connection((self.address_of(mig_data.dst), port),
                                                  timeout=30) as sock:
                        vm.migrate(plan.request(port, fd=sock.fileno(), **extra))
                elif plan.cancel_delay is not None or not plan.wait:
                    start = vm.migrate_offline if plan.offline else vm.migrate
                    start(plan.request(mig_data.vm_ports, wait=False, **extra))
                    if plan.cancel_delay is not None:
                        self._cancel_after(vm, plan.cancel_delay)
                elif plan.offline:
                    vm.migrate_offline(plan.request(mig_data.vm_ports, **extra))
                else:
                    vm.migrate(plan.request(mig_data.vm_ports, **extra))
            except BaseException as err:
                if copy is not None:
                    copy.abort(vm)
                if not isinstance(err, MigrationError):
                    raise
                if watch.in_setup:
                    raise MigrationError(
                        f"{vm.name}: migration to {mig_data.dst} port {port} never connected: "
                        f"still in setup after {watch.stall_timeout:.0f} s (is the port "
                        f"reachable from {self.hostid}?), cancelled: {err}") from err
                if watch.stalled:
                    at = f" at {watch.percent:.1f} %" if watch.percent is not None else ""
                    raise MigrationError(
                        f"{vm.name}: migration to {mig_data.dst} stalled{at}: no progress "
                        f"for {watch.stall_timeout:.0f} s (have the hosts lost contact?), "
                        f"cancelled: {err}") from err
                raise
            finally:
                self._stalls.ended(key)

    def _cancel_after(self, vm: VM, delay: float) -> None:
        """`cancel_delay`: cancel the running migration `delay` s after its
        start; a migration that completed first is a failure to cancel."""
        time.sleep(delay)
        stats = vm.cancel_migration(wait=True)
        if stats.succeeded:
            raise MigrationError(f"{vm.name}: could not cancel the migration after {delay:g} s "
                                 f"(cancel_delay): it had completed")
        log.info("%s: migration %s after cancel_delay %g s", vm.name, stats.status, delay)

    def _after_cancel(self, mig_data: MigrationData, session: SyncData) -> None:
        """A migration cancelled on purpose: the guest must still run on the
        source; the destination stops the QEMU that waited for it."""
        if mig_data.is_src():
            for vm in mig_data.vms:
                status = vm.query_status()
                if status == "paused" and mig_data.plan.offline:   # stopped to migrate
                    vm.resume()
                    status = vm.query_status()
                if status != "running":
                    raise MigrationError(f"{vm.name}: source guest is {status!r} after the "
                                         "cancelled migration, expected 'running'")
        else:
            self.destroy_stale_vms(mig_data)
        session.barrier("cancelled", timeout=mig_data.plan.timeouts.sync)

    def wait_vms_dest(self, mig_data: MigrationData) -> None:
        """Destination, once the source reported its result: wait until the
        incoming side has ended and the guests run here."""
        offline = mig_data.plan.offline
        for vm in mig_data.vms:
            vm.wait_for_migration_incoming(timeout=mig_data.plan.timeouts.sync,
                                           expect_running=not offline)
            if offline:  # the stopped guest arrives stopped: continue it here
                vm.resume()

    def check_vms_src(self, mig_data: MigrationData) -> None:
        """Source: QEMU must have handed the guest over; then stop it."""
        for vm in mig_data.vms:
            status = vm.query_status() if vm.is_alive() else "gone"
            if status not in ("postmigrate", "gone"):
                raise MigrationError(f"{vm.name}: source QEMU is {status!r} after migration, "
                                     "expected 'postmigrate'")
            log.info("%s: source QEMU is %s, the guest runs on %s now; stopping it here",
                     vm.name, status, mig_data.dst)
            self.env.unregister_vm(vm.name)
            vm.destroy(gracefully=False)

    def check_vms_dst(self, mig_data: MigrationData) -> None:
        """Destination: the guest must be running here now."""
        for vm in mig_data.vms:
            status = vm.query_status()
            log.info("%s: destination guest is %s on %s", vm.name, status, self.hostid)
            if status != "running":
                raise MigrationError(f"{vm.name}: destination guest is {status!r} after "
                                     f"migration, expected 'running'\n{vm.log_tail()}")

    # -- migrations -----------------------------------------------------------

    def migrate(self, vms_name: Sequence[str], srchost: str, dsthost: str,
                start_work: Optional[Work] = None, check_work: Optional[Work] = None,
                params_append: Optional[dict[str, Any]] = None) -> MigrationThread:
        """Start a migration in a thread and return it; join() re-raises errors."""
        with self._counter_lock:
            index = next(self._counter)
        for host in (srchost, dsthost):
            if host not in self.hosts:
                raise ConfigError(f"migration host {host!r} is not one of {self.hosts}")
        params = Params(self.params)
        params.update(params_append or {})
        mig_id = f"mig{index}"
        # The params as they are now, read once: a test may change its own
        # params before its next migration, which then follows them.
        plan = MigrationPlan.from_params(params, mig_id=mig_id, src=srchost, dst=dsthost,
                                         vms=vms_name)
        mig_data = MigrationData(params, self.hostid, srchost, dsthost, vms_name, mig_id,
                                 plan)
        self.migrations.append(mig_data)
        thread = MigrationThread(
            lambda: self._migrate(mig_data, start_work, check_work),
            name=f"{mig_id}-{'+'.join(vms_name)}-{srchost}-{dsthost}")
        thread.start()
        return thread

    def migrate_wait(self, vms_name: Sequence[str], srchost: str, dsthost: str,
                     start_work: Optional[Work] = None, check_work: Optional[Work] = None,
                     params_append: Optional[dict[str, Any]] = None) -> None:
        self.migrate(vms_name, srchost, dsthost, start_work, check_work, params_append).join()

    def _migrate(self, mig_data: MigrationData, start_work: Optional[Work],
                 check_work: Optional[Work]) -> None:
        if not (mig_data.is_src() or mig_data.is_dst()):
            log.info("%s: this host takes no part", mig_data.mig_id)
            return
        session = self._sync_session(mig_data.mig_id, [mig_data.src, mig_data.dst])
        # Guests with a NIC: their network measured from outside (netcheck/).
        net = NetworkChecks.for_vms([(vm.name, vm.params) for vm in mig_data.plan.vms])
        try:
            self._migration_steps(mig_data, session, net, start_work, check_work)
        except SyncAborted as peer:
            self._discard_copy(mig_data)
            self._local_root_cause(peer)
            raise
        except BaseException as err:
            self._discard_copy(mig_data)
            reason = self._blame(err)
            log.error("%s failed: %s", mig_data.mig_id, reason)
            _abort_quietly(session, reason)
            self._watch.abort(reason)
            raise
        finally:
            if net is not None:
                net.close()
            session.close()

    def _migration_steps(self, mig_data: MigrationData, session: SyncData,
                         net: Optional[NetworkChecks], start_work: Optional[Work],
                         check_work: Optional[Work]) -> None:
        """Both sides of one migration, step by step (module docstring)."""
        timeouts = mig_data.plan.timeouts
        self._hook_before(mig_data)
        if mig_data.is_dst():
            self.destroy_stale_vms(mig_data)
            progress.info("waiting\t%s: incoming from %s", mig_data.mig_id, mig_data.src)
        session.barrier("ready", timeout=timeouts.sync)
        if mig_data.plan.storage.copy:
            mig_data.disk_copy = DiskCopy(mig_data.plan, self.hostid, self.address_of)
            mig_data.disk_copy.exchange_sizes(session, timeouts.sync)
        if mig_data.is_src():
            self._source_side(mig_data, session, net, start_work)
        else:
            self._destination_side(mig_data, session)
        # The destination waits here, not on QEMU: if the source fails it
        # aborts the session and this returns at once with its reason.
        states = session.sync(mig_data.stats or None,
                              timeout=timeouts.migration + timeouts.sync, tag="migrated")
        mig_data.stats = mig_data.stats or states.get(mig_data.src) or {}
        if mig_data.plan.cancel_delay is not None:   # cancelled on purpose
            self._after_cancel(mig_data, session)
            if net is not None and mig_data.is_src():   # the guest stayed: no fdb proof
                net.finish()
                self._network_verdict(mig_data, net, f"{mig_data.src} (cancelled)", None)
            return
        if mig_data.is_dst():
            self.wait_vms_dest(mig_data)
            if mig_data.disk_copy is not None:   # export stopped / partial copy removed
                mig_data.disk_copy.finish_destination(mig_data.vms)
        progress.info("checking\t%s", mig_data.mig_id)
        found = self._check_side(mig_data, net, check_work)
        checked = session.sync(found, timeout=timeouts.work + timeouts.sync, tag="checked")
        if net is not None and mig_data.is_src():
            self._network_verdict(mig_data, net, mig_data.dst, checked.get(mig_data.dst))
        self._hook_after(mig_data)

    @staticmethod
    def _network_verdict(mig_data: MigrationData, net: NetworkChecks, where: str,
                         findings: Optional[Mapping[str, Any]]) -> None:
        """Source: the network figures into the stats; a FAIL naming the network."""
        gone = [vm.name for vm in mig_data.vms if not vm.is_alive()]
        problems = net.record(mig_data.stats, where, findings, gone)
        if problems:
            raise NetworkCheckError("; ".join(problems))

    def _source_side(self, mig_data: MigrationData, session: SyncData,
                     net: Optional[NetworkChecks], start_work: Optional[Work]) -> None:
        """Source: boot, start work, learn the ports, migrate, keep the stats."""
        timeouts = mig_data.plan.timeouts
        self.prepare_vms(mig_data)
        if start_work is not None:
            start_work(mig_data)
        if net is not None:
            net.start()
        ports = session.sync(None, timeout=timeouts.work + timeouts.sync, tag="ports")
        mig_data.vm_ports = {k: int(v) for k, v in ports[mig_data.dst].items()}
        self._ports_exchanged(mig_data)
        if mig_data.disk_copy is not None:
            mig_data.disk_copy.exchange_ports(session, timeouts.sync)
        self.migrate_vms_src(mig_data)
        if net is not None:
            net.switched()
        mig_data.stats = {vm.name: (vm.last_migration or vm.migration_stats()).as_dict()
                          for vm in mig_data.vms}
        if mig_data.disk_copy is not None:
            for name, entry in mig_data.stats.items():
                entry["disk_copy"] = mig_data.disk_copy.stats(name)

    def _destination_side(self, mig_data: MigrationData, session: SyncData) -> None:
        """Destination: QEMUs waiting for the stream; their ports to the source."""
        timeouts = mig_data.plan.timeouts
        ports = self.migrate_vms_dest(mig_data)
        session.sync(ports, timeout=timeouts.work + timeouts.sync, tag="ports")
        self._ports_exchanged(mig_data)
        if mig_data.disk_copy is not None:
            mig_data.disk_copy.exchange_ports(session, timeouts.sync)

    def _check_side(self, mig_data: MigrationData, net: Optional[NetworkChecks],
                    check_work: Optional[Work]) -> Optional[dict[str, dict[str, Any]]]:
        """Each side's checks; the destination's network findings, for the source."""
        if mig_data.is_src():
            self.check_vms_src(mig_data)
            if net is not None:
                net.finish()
            return None
        self.check_vms_dst(mig_data)
        found = net.check_destination(self.hostid, mig_data.stats) if net is not None else None
        if check_work is not None:
            check_work(mig_data)
        return found

    def _discard_copy(self, mig_data: MigrationData) -> None:
        """Destination of a failed copy-mode migration: no partial image stays."""
        if mig_data.disk_copy is None or not mig_data.is_dst():
            return
        try:
            mig_data.disk_copy.discard(mig_data.vms)
        except Exception as err:  # the migration's own error is the story
            log.warning("%s: removing the partial disk copy: %s", mig_data.mig_id, err)

    # -- the test ---------------------------------------------------------------

    def migration_scenario(self) -> None:
        """What a scenario does; subclasses override."""
        raise NotImplementedError("subclasses of MultihostMigration define migration_scenario()")

    def run(self) -> None:
        """Run the scenario, then clean up on every host together."""
        try:
            self.migration_scenario()
            self._main_sync.barrier("scenario-done", timeout=self.mig_timeout + self.sync_timeout)
            if self.hostid == self.master_id:
                self._watch.end()
        except SyncAborted as peer:
            self._local_root_cause(peer)
            raise
        except BaseException as err:
            self.abort(self._blame(err), abort_kind(err))
            raise
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        """Stop this host's VMs; the master removes the disks and the server."""
        progress.info("cleanup")
        self._relay_stop()
        try:
            self.env.destroy_all(gracefully=False)
            self._watch.stop()
        finally:
            try:
                self._main_sync.close()
            finally:
                if self.sync_server is not None or self.storage.copy:
                    # shared: the master's disks; copy: every host's own
                    for image in self._images():
                        if image.create:
                            storage.remove_image(image)
                    if self.tls is not None and self.tls.own:
                        shutil.rmtree(self.tls.directory, ignore_errors=True)
                if self.sync_server is not None:
                    self.sync_server.stop()
