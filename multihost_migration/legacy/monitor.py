"""vm.monitor as legacy tests drive it (virttest's QMPMonitor), over the
VM's QMP channel: QMP commands by name, `info X` as query-X, the
migration knobs, and QMP events by name."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Optional

from multihost_migration.legacy.hostutils import convert_data_size
from multihost_migration.legacy.unsupported import unsupported

if TYPE_CHECKING:
    from multihost_migration.legacy.vm import LegacyVM

log = logging.getLogger(__name__)


class LegacyMonitor:
    """The QMP monitor of one LegacyVM."""

    def __init__(self, vm: "LegacyVM") -> None:
        self._vm = vm
        self._cleared: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- commands -----------------------------------------------------------

    def cmd(self, cmd: str, args: Optional[dict[str, Any]] = None, timeout: float = 60,
            debug: bool = True, fd: Any = None) -> Any:
        """A QMP command; a human monitor command line (with spaces) goes
        through human-monitor-command."""
        if " " in cmd.strip():
            return self.human_monitor_cmd(cmd, timeout)
        return self._vm.qmp(cmd, args or None, timeout=float(timeout))

    def human_monitor_cmd(self, cmd: str = "", timeout: float = 60, **_: Any) -> Any:
        return self._vm.qmp("human-monitor-command", {"command-line": cmd},
                            timeout=float(timeout))

    def send_args_cmd(self, cmdlines: str, timeout: float = 60, **_: Any) -> Any:
        return self.human_monitor_cmd(cmdlines, timeout)

    def info(self, what: str, debug: bool = True) -> Any:
        """`info migrate` -> query-migrate, etc."""
        return self._vm.qmp(f"query-{what.strip().replace('_', '-')}")

    def query(self, what: str) -> Any:
        return self.info(what)

    def get_status(self) -> Any:
        return self._vm.qmp("query-status")

    def verify_status(self, status: str) -> bool:
        return str(self._vm.query_status()) == status

    # -- migration knobs ------------------------------------------------------

    def migrate_set_speed(self, value: Any) -> Any:
        """Bandwidth: '100M', '1G' (bytes/s, binary orders) or bytes."""
        speed = value if isinstance(value, int) else convert_data_size(str(value), "M")
        return self.set_migrate_parameter("max-bandwidth", int(speed))

    def migrate_set_downtime(self, value: Any) -> Any:
        """Downtime limit in seconds (QEMU's downtime-limit, ms)."""
        return self.set_migrate_parameter("downtime-limit", int(float(value) * 1000))

    def set_migrate_capability(self, state: Any, capability: str) -> Any:
        on = state if isinstance(state, bool) else str(state).lower() in ("on", "yes", "true")
        return self._vm.qmp("migrate-set-capabilities",
                            capabilities=[{"capability": capability, "state": on}])

    def get_migrate_capability(self, capability: str) -> bool:
        for cap in self._vm.qmp("query-migrate-capabilities"):
            if cap.get("capability") == capability:
                return bool(cap.get("state"))
        raise unsupported(f"monitor.get_migrate_capability({capability!r})",
                          "QEMU has no such capability")

    def set_migrate_parameter(self, parameter: str, value: Any, **_: Any) -> Any:
        return self._vm.qmp("migrate-set-parameters", {parameter: value})

    def get_migrate_parameter(self, parameter: str) -> Any:
        return self._vm.qmp("query-migrate-parameters").get(parameter)

    def set_migrate_cache_size(self, value: Any) -> Any:
        return self.set_migrate_parameter("xbzrle-cache-size", int(value))

    def get_migrate_cache_size(self) -> Any:
        return self.get_migrate_parameter("xbzrle-cache-size")

    def migrate_cancel(self) -> Any:
        return self._vm.qmp("migrate_cancel")

    # -- events -----------------------------------------------------------------

    def _events(self) -> Any:
        return self._vm.event_log()

    def clear_event(self, name: str) -> None:
        """Forget the events `name` seen so far."""
        with self._lock:
            self._cleared[name] = self._events().mark()

    def clear_events(self) -> None:
        mark = self._events().mark()
        with self._lock:
            self._cleared = {"": mark}

    def _since(self, name: str) -> int:
        with self._lock:
            return max(self._cleared.get(name, 0), self._cleared.get("", 0))

    def get_event(self, name: str) -> Optional[dict[str, Any]]:
        """The first event `name` since it was last cleared, or None."""
        for event in self._events().since(self._since(name)):
            if event.get("event") == name:
                return dict(event)
        return None

    def get_events(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._events().since(self._since(""))]

    def __getattr__(self, name: str) -> Any:
        raise unsupported(f"vm.monitor.{name}")
