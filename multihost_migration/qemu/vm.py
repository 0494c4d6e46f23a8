"""One QEMU virtual machine: launch, QMP, guest login, migration, shutdown.

Lifecycle (`VMState`), guarded by `_require_state`:

    NEW --create()--> RUNNING --migrate()--> MIGRATING --completed--> MIGRATED
     |                  ^                        |--failed/cancelled--> RUNNING
     |                  |
     +--create(incoming=True)--> INCOMING --wait_for_migration_incoming()--+
    any --destroy()--> DESTROYED --create()--> ...

Migration settings: `apply_migration_settings(settings)` sets the
capabilities and parameters of a `MigrationSettings` (settings.py, parsed
once per migration) and reads them back; `migrate(MigrateRequest(...))`
takes everything about one outgoing migration in one frozen object; the
waiter (migration.py) and the settings work through the QEMU's `QemuLink`
(QMP channel and process), never through the VM; with `migration_tls` the
VM carries TLS credentials objects (tls.py) and selects the server side in
start_incoming() and the client side in migrate().  With `heartbeat = yes`
the host records the guest's heartbeats (heartbeat.py) from create() on.

Thread safety: QMP commands go through a thread-safe `QMPChannel`; state
transitions take `_lock`; long waits never hold it, so `destroy()` from
another thread always proceeds.
"""

from __future__ import annotations

import enum
import logging
import shlex
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Mapping, Optional, Union

from ..errors import (ConfigError, GuestError, LoginError, MigrationError, MigrationFailed,
                      QMPError, VMDiedError, VMError, VMLaunchError, VMStateError)
from ..guest.console import ConsoleSession
from ..guest.network import NetworkSession, network_login
from ..guest.network import copy_files_from as guest_copy_from
from ..guest.network import copy_files_to as guest_copy_to
from . import settings as mig_settings
from .cmdline import RunPaths, build_command, effective_cache, o_direct_supported
from .config import LOGIN_VIAS, VMConfig
from .heartbeat import HeartbeatRecorder
from .link import QemuLink
from .migration import MigrateRequest, MigrationWaiter
from .process import QemuProcess, read_tail
from .qmp_channel import QMPChannel
from .stats import MigrationStats
from .transport import (Transport, exec_connect_command, exec_listen_command, free_port,
                        incoming_uri, listening_port, outgoing_uri, wait_listening)

LOG = logging.getLogger(__name__)

#: Seconds allowed for QEMU to open its QMP socket after exec.
LAUNCH_TIMEOUT = 30.0
#: Seconds allowed for QMP `quit` to end the process in a graceful destroy.
QUIT_TIMEOUT = 10.0
_MAX_SOCKET_PATH = 100
#: Seconds a network login gets before `login_via = auto` falls back to the
#: serial console (a booted guest answers telnet in about a second).
NETWORK_LOGIN_TRY = 30.0
#: Seconds between network login attempts.
NETWORK_LOGIN_RETRY = 1.0


class VMState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    INCOMING = "incoming"
    MIGRATING = "migrating"
    MIGRATED = "migrated"
    DESTROYED = "destroyed"


_QEMU_UP = (VMState.RUNNING, VMState.INCOMING, VMState.MIGRATING, VMState.MIGRATED)


def _qmp_names(values: Mapping[str, Any]) -> dict[str, Any]:
    """Python-friendly keys (auto_converge) to QMP names (auto-converge)."""
    return {key.replace("_", "-"): value for key, value in values.items()}


class VM:
    """A QEMU guest on this host.  The constructor does no I/O."""

    def __init__(self, name: str, params: Mapping[str, Any], log_dir: Path,
                 address_of: Optional[Callable[[str], Optional[str]]] = None) -> None:
        self.name = name
        self.params = dict(params)
        self.config = VMConfig.from_params(name, self.params)
        self.log_dir = Path(log_dir)
        self.address_of = address_of
        self.log = LOG.getChild(name)
        self.command: list[str] = []
        self.last_migration: Optional[MigrationStats] = None
        self._lock = threading.RLock()
        self._state = VMState.NEW
        self._process: Optional[QemuProcess] = None
        #: Set when QEMU turned out to have exited before we stopped it
        #: (killed from outside, crashed): (pid, exit status, log tail).
        self._died: Optional[tuple[Optional[int], int, str]] = None
        self._qmp: Optional[QMPChannel] = None
        self._console: Optional[ConsoleSession] = None
        self._network_sessions: list[NetworkSession] = []
        self._run_dir: Optional[Path] = None
        self._paths: Optional[RunPaths] = None
        self._incoming_mark = 0
        self._waiter: Optional[MigrationWaiter] = None
        self._heartbeat: Optional[HeartbeatRecorder] = None
        self._default_parameters: dict[str, Any] = {}
        self.incoming_target: Optional[str] = None

    # -- properties ---------------------------------------------------------

    @property
    def state(self) -> VMState:
        return self._state

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    @property
    def serial_log_path(self) -> Path:
        return self.log_dir / f"{self.name}-serial.log"

    @property
    def qemu_log_path(self) -> Path:
        return self.log_dir / f"{self.name}-qemu.log"

    @property
    def heartbeat_log_path(self) -> Path:
        """"host_epoch_ns seq guest_ns" lines (VM param heartbeat = yes)."""
        return self.log_dir / f"{self.name}-heartbeat.log"

    @property
    def heartbeat(self) -> Optional[HeartbeatRecorder]:
        return self._heartbeat

    @property
    def paths(self) -> RunPaths:
        if self._paths is None:
            raise VMStateError(self.name, "paths", self._state.value,
                               [s.value for s in _QEMU_UP])
        return self._paths

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def log_tail(self, max_bytes: int = 4096) -> str:
        return read_tail(self.qemu_log_path, max_bytes)

    def unexpected_exit(self) -> Optional[VMDiedError]:
        """Why QEMU is gone, if it exited without being asked to (a kill from
        outside, a crash): seen now, or when the VM was stopped after it."""
        with self._lock:
            process = self._process
            if self._died is None and process is not None and \
                    self._state is not VMState.NEW and process.returncode is not None:
                self._died = (process.pid, process.returncode, self.log_tail())
            if self._died is None:
                return None
            pid, code, log_tail = self._died
            return VMDiedError(self.name, code, log_tail, pid=pid)

    def __repr__(self) -> str:
        return f"<VM {self.name} {self._state.value} pid={self.pid}>"

    def _require_state(self, operation: str, *allowed: VMState) -> None:
        if self._state not in allowed:
            raise VMStateError(self.name, operation, self._state.value,
                               [s.value for s in allowed])

    def _set_state(self, state: VMState) -> None:
        with self._lock:
            if state is not self._state:
                self.log.debug("state %s -> %s", self._state.value, state.value)
            self._state = state

    # -- launch ---------------------------------------------------------------

    def _make_paths(self) -> RunPaths:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.log_dir)) + len(self.name) + 30 < _MAX_SOCKET_PATH:
            run_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-run-", dir=self.log_dir))
        else:  # unix socket paths are limited to 108 bytes
            run_dir = Path(tempfile.mkdtemp(prefix=f"mhm-{self.name}-"))
        self._run_dir = run_dir
        return RunPaths(qmp_socket=run_dir / "qmp.sock",
                        serial_socket=run_dir / "serial.sock",
                        serial_log=self.serial_log_path,
                        qemu_log=self.qemu_log_path,
                        pidfile=run_dir / "qemu.pid",
                        extra_serial_dir=run_dir)

    def _probe_caches(self) -> dict[str, str]:
        caches = {}
        for disk in self.config.disks:
            try:
                o_direct = o_direct_supported(disk.path)
            except OSError as err:
                raise VMLaunchError(self.name, [self.config.qemu_binary], None,
                                    f"cannot open disk {disk.path}: {err}") from err
            caches[disk.name] = effective_cache(disk, o_direct)
            if caches[disk.name] != disk.cache:
                self.log.info("%s: O_DIRECT not supported on %s, cache=%s",
                              disk.name, disk.path, caches[disk.name])
        return caches

    def create(self, incoming: bool = False, timeout: float = LAUNCH_TIMEOUT) -> None:
        """Start QEMU (with `-incoming defer` if `incoming`) and connect QMP.

        Raises VMLaunchError (command line, exit code, QEMU output) if QEMU
        exits or does not open QMP within `timeout`; no process is left.
        """
        with self._lock:
            self._require_state("create", VMState.NEW, VMState.DESTROYED)
            self._set_state(VMState.STARTING)
        try:
            self._launch(incoming, timeout)
        except BaseException:
            self._cleanup_after_failed_launch()
            raise
        self._set_state(VMState.INCOMING if incoming else VMState.RUNNING)

    def _launch(self, incoming: bool, timeout: float) -> None:
        paths = self._paths = self._make_paths()
        caches = self._probe_caches()
        self.command = build_command(self.config, paths,
                                     incoming="defer" if incoming else None,
                                     caches=caches)
        self._check_tls()
        self.log.info("starting QEMU%s", " (incoming)" if incoming else "")
        self.log.debug("command line: %s", shlex.join(self.command))
        if self.config.heartbeat:
            self._heartbeat = HeartbeatRecorder(paths.heartbeat_socket,
                                                self.heartbeat_log_path,
                                                self.log.getChild("heartbeat"))
            try:
                self._heartbeat.start()
            except VMError as err:
                raise VMLaunchError(self.name, self.command, None, str(err)) from err
        process = self._process = QemuProcess(self.name, paths.qemu_log, self.log)
        try:
            process.start(self.command)
        except OSError as err:
            raise VMLaunchError(self.name, self.command, None, str(err)) from err
        qmp = self._qmp = QMPChannel(self.name, self.log)
        try:
            qmp.connect(paths.qmp_socket, timeout, process.is_alive)
            qmp.execute("migrate-set-capabilities", {"capabilities": [
                {"capability": "events", "state": True}]})
            self._default_parameters = dict(qmp.execute("query-migrate-parameters") or {})
        except QMPError as err:
            if not process.wait(1.0):
                process.kill()
            raise VMLaunchError(self.name, self.command, process.returncode,
                                f"{process.tail()}\n{err}") from err
        self.log.info("QEMU pid %s up", process.pid)

    def _check_tls(self) -> None:
        tls = self.config.tls
        if tls is not None and tls.missing_files():
            raise VMLaunchError(self.name, self.command, None,
                                f"migration_tls={tls.kind}: {tls.directory} lacks "
                                f"{', '.join(tls.missing_files())} (create them with "
                                f"make_tls_credentials)")

    def _cleanup_after_failed_launch(self) -> None:
        try:
            self._release(kill=True)
        finally:
            self._set_state(VMState.DESTROYED)

    # -- QMP ------------------------------------------------------------------

    def _channel(self, operation: str) -> QMPChannel:
        self._require_state(operation, *_QEMU_UP)
        if self._qmp is None:
            raise VMStateError(self.name, operation, "no-qmp", [])
        return self._qmp

    def _qemu(self, operation: str) -> QemuLink:
        """The QEMU's QMP link, for the waiter and the settings."""
        channel = self._channel(operation)
        process = self._process
        if process is None:
            raise VMStateError(self.name, operation, "no-process", [])
        return QemuLink(self.name, channel, process, self.log)

    def qmp_link(self) -> QemuLink:
        """The QEMU's QMP link, for code that drives QEMU beyond the VM's own
        operations (the disk copy of storage_mode = copy: blockmirror.py)."""
        return self._qemu("qmp_link")

    def qmp(self, command: str, arguments: Optional[Mapping[str, Any]] = None,
            *, timeout: float = 30.0, **kwargs: Any) -> Any:
        """Execute a QMP command; arguments as a dict and/or keywords."""
        args = dict(arguments or {})
        args.update(kwargs)
        return self._qemu(command).execute(command, args or None, timeout=timeout)

    def pass_fd(self, fd: int, fdname: str) -> None:
        """Give QEMU a file descriptor under `fdname` (SCM_RIGHTS + getfd)."""
        self._channel("pass_fd").send_fd(fd, fdname)

    def event_mark(self) -> int:
        """A cursor into this QEMU's QMP events: events after it are waitable."""
        return self._channel("event_mark").events.mark()

    def wait_for_event(self, match: Callable[[dict[str, Any]], bool], mark: int,
                       timeout: float) -> Optional[dict[str, Any]]:
        """The first QMP event since `mark` that `match` accepts; None at the
        deadline (e.g. a MIGRATION event with a given status)."""
        return self._channel("wait_for_event").events.wait_for(match, mark, timeout)

    def events_since(self, mark: int) -> list[dict[str, Any]]:
        """Every QMP event of this QEMU since `mark`, in order."""
        return self._channel("events_since").events.since(mark)

    def query_status(self) -> str:
        return str(self.qmp("query-status")["status"])

    def pause(self) -> None:
        self.qmp("stop")

    def resume(self) -> None:
        self.qmp("cont")

    # -- migration --------------------------------------------------------------

    def set_migration_capabilities(self, capabilities: Mapping[str, bool]) -> None:
        caps = [{"capability": name, "state": bool(state)}
                for name, state in _qmp_names(capabilities).items()]
        self.qmp("migrate-set-capabilities", capabilities=caps)

    def set_migration_parameters(self, parameters: Mapping[str, Any]) -> None:
        self.qmp("migrate-set-parameters", _qmp_names(parameters))

    def apply_migration_settings(self, settings: mig_settings.MigrationSettings
                                 ) -> mig_settings.AppliedSettings:
        """Set the capabilities and parameters of `settings` and read them
        back (MigrationSettingsError if QEMU did not take them).  Declarative:
        other capabilities are turned off and other parameters return to
        QEMU's launch values, so call it on both sides before every
        start_incoming / migrate, also with no settings.  Its
        `postcopy_after_passes` is for the MigrateRequest: nothing is kept."""
        self._require_state("apply_migration_settings", VMState.RUNNING,
                            VMState.INCOMING)
        return mig_settings.apply(self._qemu("apply_migration_settings"), settings,
                                  self._default_parameters)

    def _select_tls(self, incoming: bool) -> None:
        tls = self.config.tls
        if tls is None:
            return
        wanted = tls.incoming_parameters() if incoming else tls.outgoing_parameters()
        mig_settings.set_typed_parameters(self._qemu("select_tls"), wanted)
        self.log.info("migration over TLS (%s, %s)", tls.kind, wanted["tls-creds"])

    def query_migrate(self) -> dict[str, Any]:
        return dict(self.qmp("query-migrate"))

    def migration_stats(self) -> MigrationStats:
        return MigrationStats.from_query(self.query_migrate())

    def start_incoming(self, transport: Union[Transport, str] = Transport.TCP,
                       host: str = "0.0.0.0", port: int = 0, target: Optional[str] = None,
                       fd: Optional[int] = None) -> int:
        """migrate-incoming on a `create(incoming=True)` VM.

        tcp:  listens on host:port; returns the real port (read back from
              query-migrate, so port=0 picks a free one).
        unix: listens on `target` (default: a socket in the run dir); see
              `incoming_target`; returns 0.
        exec: runs `target`, or by default a socat accepting one TCP
              connection on host:port (port 0 = pick one); returns the port.
        fd:   reads from `fd` (passed to QEMU here) or the getfd name `target`.
        """
        self._require_state("start_incoming", VMState.INCOMING)
        kind = Transport.parse(transport)
        real_port = int(port)
        if kind is Transport.UNIX and target is None:
            target = str(self.paths.extra_serial_dir / "migrate-in.sock")
        elif kind is Transport.EXEC and target is None:
            real_port = real_port or free_port(host)
            target = exec_listen_command(host, real_port)
        elif kind is Transport.FD and fd is not None:
            target = "migfd-in"
            self.pass_fd(fd, target)
        uri = incoming_uri(kind, host, real_port, target)
        self.incoming_target = target
        self._select_tls(incoming=True)
        self._incoming_mark = self._channel("start_incoming").events.mark()
        try:
            self.qmp("migrate-incoming", uri=uri)
            if kind is Transport.TCP:
                real_port = listening_port(self.query_migrate()) or 0
            elif kind is Transport.EXEC and real_port and not wait_listening(real_port, 10.0):
                raise VMError(f"exec transport: nothing listens on port {real_port}")
        except (QMPError, VMError) as err:
            raise MigrationFailed(self.name, f"migrate-incoming {uri}: {err}",
                                  log_tail=self.log_tail()) from err
        self.log.info("waiting for incoming migration on %s (port %s)", uri, real_port)
        return real_port if kind in (Transport.TCP, Transport.EXEC) else 0

    def migrate(self, request: MigrateRequest) -> MigrationStats:
        """Migrate this (source) VM as `request` says (see MigrateRequest);
        block until done unless `request.wait` is False.  The final
        statistics carry ~5 samples/s of progress and the downtime-limit in
        force.

        Returns the final statistics; raises MigrationError (MigrationFailed /
        MigrationTimeout) with status, error-desc and stats on failure.
        """
        with self._lock:
            self._require_state("migrate", VMState.RUNNING)
            self._set_state(VMState.MIGRATING)
        try:
            waiter = self._start_migration(request)
        except (QMPError, VMError) as err:
            self._set_state(VMState.RUNNING)
            raise MigrationFailed(self.name, f"migrate command failed: {err}",
                                  log_tail=self.log_tail()) from err
        except BaseException:
            self._set_state(VMState.RUNNING)
            raise
        if not request.wait:
            return self.migration_stats()
        stats = self.wait_for_migration(request.timeout, waiter)
        if request.destroy_source:
            self.destroy()
        return stats

    def _outgoing_uri(self, request: MigrateRequest) -> str:
        port = request.port_of(self.name)
        host = (self.address_of(request.dest_host) if self.address_of else None) \
            or request.dest_host
        target = request.target
        if request.transport is Transport.EXEC and target is None:
            target = exec_connect_command(host, port)
        elif request.transport is Transport.FD and request.fd is not None:
            target = "migfd-out"
            self.pass_fd(request.fd, target)
        return outgoing_uri(request.transport, host, port, target)

    def _start_migration(self, request: MigrateRequest) -> MigrationWaiter:
        """TLS side, waiter (before the command: it marks the events), migrate."""
        uri = self._outgoing_uri(request)
        self._select_tls(incoming=False)
        waiter = self._waiter = MigrationWaiter(
            self._qemu("migrate"), postcopy_after=request.postcopy_after,
            postcopy_after_passes=request.postcopy_after_passes,
            on_pre_switchover=request.on_pre_switchover)
        waiter.read_downtime_limit()
        self.log.info("migrating to %s", uri)
        self.qmp("migrate", uri=uri)
        return waiter

    def wait_for_migration(self, timeout: float = 300.0,
                           waiter: Optional[MigrationWaiter] = None) -> MigrationStats:
        """Wait (source side) for a started migration to finish."""
        self._require_state("wait_for_migration", VMState.MIGRATING)
        waiter = waiter or self._waiter or MigrationWaiter(
            self._qemu("wait_for_migration"), mark=0)
        try:
            stats = waiter.wait_source(timeout)
        except MigrationError:
            if self.is_alive():
                self._set_state(VMState.RUNNING)
            raise
        self._set_state(VMState.MIGRATED)
        self.last_migration = stats
        self.log.info("migration completed: %s", stats.summary())
        return stats

    def start_postcopy(self) -> None:
        """Switch a running precopy migration (postcopy-ram on) to postcopy."""
        self._require_state("start_postcopy", VMState.MIGRATING)
        self.qmp("migrate-start-postcopy")

    def continue_migration(self) -> None:
        """migrate-continue from status pre-switchover (when not using the
        `on_pre_switchover` hook of a waiting migrate())."""
        self._require_state("continue_migration", VMState.MIGRATING)
        self.qmp("migrate-continue", state="pre-switchover")

    def cancel_migration(self, wait: bool = True, timeout: float = 30.0) -> MigrationStats:
        """migrate_cancel; with `wait`, until QEMU reports a final status.

        The source keeps running the guest (state RUNNING) when the cancel
        took; if the migration completed first the state is MIGRATED.
        """
        self._require_state("cancel_migration", VMState.MIGRATING)
        self.qmp("migrate_cancel")
        if not wait:
            return self.migration_stats()
        deadline = time.monotonic() + timeout
        while True:
            stats = self.migration_stats()
            if stats.finished:
                break
            if time.monotonic() >= deadline:
                raise MigrationFailed(self.name, f"migrate_cancel: still {stats.status} "
                                      f"after {timeout:.0f}s", stats.status,
                                      stats.error_desc, stats.as_dict(), self.log_tail())
            time.sleep(0.05)
        self._set_state(VMState.MIGRATED if stats.succeeded else VMState.RUNNING)
        self.log.info("migration %s after migrate_cancel", stats.status)
        return stats

    def migrate_offline(self, request: MigrateRequest) -> MigrationStats:
        """Stop the guest, then migrate (see migrate()).  The destination
        keeps it paused: wait there with expect_running=False, then `cont`."""
        self._require_state("migrate_offline", VMState.RUNNING)
        self.pause()
        return self.migrate(request)

    def wait_for_migration_incoming(self, timeout: float = 300.0,
                                    check: bool = True,
                                    expect_running: bool = True) -> str:
        """Wait (destination side) until the incoming migration ends.

        Returns "completed" once the guest runs here (or, with
        `expect_running=False`, as soon as the stream is loaded: an offline
        migration leaves the guest paused).  On failure raises
        MigrationFailed with the QEMU log tail, or returns "failed" if
        `check` is False.
        """
        if self._state is VMState.RUNNING:
            return "completed"
        self._require_state("wait_for_migration_incoming", VMState.INCOMING)
        status = MigrationWaiter(self._qemu("wait_for_migration_incoming"),
                                 mark=self._incoming_mark).wait_incoming(
            timeout, check, expect_running)
        if status == "completed":
            self._set_state(VMState.RUNNING)
            self.log.info("incoming migration completed, guest running")
        return status

    # -- guest sessions ---------------------------------------------------------

    def wait_for_login(self, timeout: float = 60.0, via: Optional[str] = None
                       ) -> ConsoleSession:
        """A shell on the guest, as avocado-vt's: over the guest's network
        when the VM has a NIC, else on its serial console.

        `via` (default the VM's `login_via` param): `auto` tries the network
        (telnet, guest/network.py) and falls back to the serial console when
        that fails (the warning says why); `network` fails instead; `serial`
        logs in on the serial console (closing an earlier session there:
        it takes one at a time).  Network sessions are independent (each
        its own guest shell, all closed by destroy()).
        """
        self._require_state("wait_for_login", VMState.RUNNING)
        via = via or self.config.login.via
        if via not in LOGIN_VIAS:
            raise ConfigError(f"{self.name}: login via {via!r}, expected one of {LOGIN_VIAS}")
        nic = self.config.nic
        if via == "serial" or (via == "auto" and nic is None):
            return self._serial_login(timeout)
        start = time.monotonic()
        try:
            return self._network_login(timeout if via == "network"
                                       else min(timeout, NETWORK_LOGIN_TRY))
        except LoginError as err:
            if via == "network":
                raise
            self.log.warning("%s: serial console instead", err)
        return self._serial_login(max(5.0, timeout - (time.monotonic() - start)))

    login = wait_for_login

    def _serial_login(self, timeout: float) -> ConsoleSession:
        """Log in on the serial console; closes an earlier console session first."""
        self._require_state("serial login", VMState.RUNNING)
        self.close_console()
        login = self.config.login
        session = ConsoleSession(self.name, self.paths.serial_socket,
                                 username=login.username, password=login.password,
                                 shell_prompt=login.shell_prompt,
                                 login_prompt=login.login_prompt,
                                 password_prompt=login.password_prompt,
                                 logger=self.log.getChild("console"))
        try:
            session.open()
            session.login(timeout)
        except BaseException as err:
            session.close()
            if isinstance(err, LoginError) and not self.is_alive():
                raise LoginError(self.name, f"QEMU exited: {err.reason}",
                                 self.log_tail()) from err
            raise
        self._console = session
        return session

    def _network_login(self, timeout: float) -> ConsoleSession:
        """A new telnet session to the guest's address, tried again until
        `timeout` (a booting guest refuses or is not reachable yet: falling
        back to the console then would start its work in another shell);
        LoginError with the last attempt's reason if none."""
        self._require_state("network login", VMState.RUNNING)
        login = self.config.login
        deadline = time.monotonic() + timeout
        while True:
            try:
                session = network_login(
                    self.name, self.get_address(), max(1.0, deadline - time.monotonic()),
                    self.log.getChild("telnet"), username=login.username,
                    password=login.password, shell_prompt=login.shell_prompt,
                    login_prompt=login.login_prompt, password_prompt=login.password_prompt)
                break
            except LoginError as err:
                if not self.is_alive():
                    raise LoginError(self.name, f"QEMU exited: {err.reason}",
                                     self.log_tail()) from err
                if time.monotonic() + NETWORK_LOGIN_RETRY >= deadline:
                    raise
                self.log.debug("%s; again in %g s", err.reason, NETWORK_LOGIN_RETRY)
                time.sleep(NETWORK_LOGIN_RETRY)
        self._network_sessions = [s for s in self._network_sessions if s.is_open]
        self._network_sessions.append(session)
        self.log.info("logged in over the network (%s:%d)", session.address, session.port)
        return session

    def get_address(self, index: int = 0) -> str:
        """The guest's address on the guest network (its NIC's, `nic_ip`);
        GuestError when the VM has no NIC (`guest_network = no`)."""
        nic = self.config.nic
        if nic is None:
            raise GuestError(f"{self.name}: no network address: the VM has no NIC "
                             "(guest_network = no)")
        if index != 0:
            raise GuestError(f"{self.name}: no NIC {index} (the VM has one NIC)")
        return nic.ip

    def copy_files_to(self, host_path: str, guest_path: str, *,
                      timeout: float = 600.0) -> None:
        """Copy a host file into the guest over its network (in a network
        session of its own, md5-checked; guest/network.py)."""
        with self._network_login(min(timeout, NETWORK_LOGIN_TRY)) as session:
            guest_copy_to(session, self, host_path, guest_path, timeout)

    def copy_files_from(self, guest_path: str, host_path: str, *,
                        timeout: float = 600.0) -> None:
        """Copy a guest file to the host over its network (as copy_files_to)."""
        with self._network_login(min(timeout, NETWORK_LOGIN_TRY)) as session:
            guest_copy_from(session, self, guest_path, host_path, timeout)

    def close_console(self) -> None:
        """Close the serial console's session (network sessions stay)."""
        session, self._console = self._console, None
        if session is not None:
            session.close()

    def close_sessions(self) -> None:
        """Close every session of this VM: the serial console's and the network's."""
        sessions, self._network_sessions = self._network_sessions, []
        for session in sessions:
            session.close()
        self.close_console()

    # -- shutdown ---------------------------------------------------------------

    def destroy(self, gracefully: bool = True, timeout: float = 30.0) -> None:
        """Stop QEMU: QMP quit -> wait -> SIGTERM/SIGKILL -> wait -> raise.

        Idempotent; always releases the console, QMP and run directory.
        """
        with self._lock:
            if self._state is VMState.NEW or (self._state is VMState.DESTROYED
                                                and self._process is None):
                return
            try:
                self._release(kill=False, gracefully=gracefully, timeout=timeout)
            finally:
                self._set_state(VMState.DESTROYED)

    def _release(self, kill: bool, gracefully: bool = False,
                 timeout: float = 30.0) -> None:
        process, qmp = self._process, self._qmp
        try:
            try:
                self.close_sessions()
            except (GuestError, OSError) as err:
                self.log.warning("closing console: %s", err)
            if process is not None and process.returncode is not None and self._died is None:
                self._died = (process.pid, process.returncode, self.log_tail())
            if process is not None and process.is_alive():
                if gracefully and not kill and qmp is not None and qmp.connected:
                    self.log.debug("QMP quit")
                    try:
                        qmp.execute("quit", timeout=5.0)
                    except QMPError as err:
                        self.log.debug("quit: %s", err)
                    process.wait(min(timeout, QUIT_TIMEOUT))
                if process.is_alive():
                    process.kill()
            if process is not None:
                self.log.info("QEMU exited with %s", process.returncode)
        finally:
            if qmp is not None:
                qmp.close()
            self._qmp = None
            self._process = None
            self._waiter = None
            heartbeat, self._heartbeat = self._heartbeat, None
            if heartbeat is not None:
                heartbeat.stop()
            if self._run_dir is not None:
                shutil.rmtree(self._run_dir, ignore_errors=True)
                self._run_dir = None

    def __enter__(self) -> "VM":
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.destroy(gracefully=exc is None)


__all__ = ["MigrateRequest", "MigrationStats", "VM", "VMState"]
