"""Network checks of a migration, made from outside the guest.

For every migration of VMs with a NIC (`guest_network = yes`) and
`netcheck = yes` (the default then):

    source                                   destination
    start: a probe per VM in the client
      (session.py, probe.py): UDP echo every
      netcheck_interval_ms, a TCP connection
      opened before the migration
    ---------------------- migration ----------------------
    switched(): mark the completion
    finish(): wait for an echo after the     check_destination(): the guest's
      mark (netcheck_recover_timeout),         MAC is learned on this host's
      the TCP connection still carries         tap (`bridge fdb`, fdb.py);
      data, the longest gap, the losses        the uplinks' state
    ---------------- sync "checked": the destination's findings ----------------
    record(): into stats[vm]["network"]; problems -> NetworkCheckError (FAIL)

A migration that did not complete (failed or cancelled, on purpose or not)
left the guest on the source: its echoes and TCP connection are checked
the same, the destination's fdb is recorded but not required (`moved`);
with its source QEMU gone too (`source_gone`) no guest is left to answer:
recorded, not a network problem (the migration's checks judge that).

Params (read once, `NetCheckPlan.from_params`):

    netcheck                  yes | no (default yes; only with guest_network = yes)
    netcheck_client           the client machine's SSH address (lab: 198.18.0.2)
    netcheck_client_port, netcheck_user, netcheck_ssh_key, netcheck_known_hosts
    netcheck_python           python3 on the client
    netcheck_interval_ms      5
    netcheck_tcp              yes: TCP continuity checked (no for reboot, early_boot)
    netcheck_recover_timeout  10 s for the guest to answer after the switchover
    netcheck_ready_timeout    30 s for the guest to answer before the migration
    netcheck_fdb_timeout      5 s for the destination's bridge to learn the MAC
    net_load                  yes: a TCP stream through the guest's echo service
    guest_bridge              br-guest: the hosts' bridge (fdb proof)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Optional, Sequence

from multihost_migration.errors import GuestCheckError
from multihost_migration.netcheck import fdb
from multihost_migration.netcheck.session import (NetworkCheckError, ProbeSession,
                                                  probe_command)
from multihost_migration.params import parse_bool
from multihost_migration.qemu.netdev import ECHO_PORT, NicConfig
from multihost_migration.remote import SshTarget

log = logging.getLogger(__name__)


def _get(params: Mapping[str, Any], key: str, default: str) -> str:
    value = params.get(key)
    return default if value is None else str(value)


@dataclass(frozen=True)
class NetCheckPlan:
    client: str = "198.18.0.2"
    client_port: int = 22
    user: str = "root"
    ssh_key: str = "/run/mhm-lab/id_ed25519"
    known_hosts: str = "/run/mhm-lab/known_hosts"
    python: str = "python3"
    interval_ms: float = 5.0
    tcp: bool = True
    load: bool = False
    recover_timeout: float = 10.0
    ready_timeout: float = 30.0
    fdb_timeout: float = 5.0
    max_seconds: float = 600.0
    bridge: str = "br-guest"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Optional["NetCheckPlan"]:
        """None when the migration's guests have no network to check."""
        if not parse_bool(_get(params, "guest_network", "no"), "guest_network") or \
                not parse_bool(_get(params, "netcheck", "yes"), "netcheck"):
            return None

        def num(key: str, default: float) -> float:
            return float(_get(params, key, str(default)))

        return cls(
            client=_get(params, "netcheck_client", cls.client),
            client_port=int(num("netcheck_client_port", cls.client_port)),
            user=_get(params, "netcheck_user", cls.user),
            ssh_key=_get(params, "netcheck_ssh_key", cls.ssh_key),
            known_hosts=_get(params, "netcheck_known_hosts", cls.known_hosts),
            python=_get(params, "netcheck_python", cls.python),
            interval_ms=num("netcheck_interval_ms", cls.interval_ms),
            tcp=parse_bool(_get(params, "netcheck_tcp", "yes"), "netcheck_tcp"),
            load=parse_bool(_get(params, "net_load", "no"), "net_load"),
            recover_timeout=num("netcheck_recover_timeout", cls.recover_timeout),
            ready_timeout=num("netcheck_ready_timeout", cls.ready_timeout),
            fdb_timeout=num("netcheck_fdb_timeout", cls.fdb_timeout),
            max_seconds=num("mig_timeout", 300.0) + 300.0,
            bridge=_get(params, "guest_bridge", cls.bridge))

    @property
    def target(self) -> SshTarget:
        return SshTarget(hostname=self.client, port=self.client_port, user=self.user,
                         key_filename=self.ssh_key, known_hosts=self.known_hosts,
                         connect_timeout=10.0)


class NetworkChecks:
    """The network checks of one migration, on one of its hosts."""

    def __init__(self, plan: NetCheckPlan, nics: Mapping[str, NicConfig]) -> None:
        self.plan = plan
        self.nics = dict(nics)
        self._probes: dict[str, ProbeSession] = {}
        self.results: dict[str, dict[str, Any]] = {}

    @classmethod
    def for_vms(cls, vms: Sequence[tuple[str, Mapping[str, Any]]]
                ) -> Optional["NetworkChecks"]:
        """For the VMs (name, params) of a migration; None if nothing to check."""
        nics = {}
        plan: Optional[NetCheckPlan] = None
        for name, params in vms:
            nic = NicConfig.from_params(name, params)
            vm_plan = NetCheckPlan.from_params(params)
            if nic is not None and vm_plan is not None:
                nics[name], plan = nic, plan or vm_plan
        return cls(plan, nics) if plan is not None and nics else None

    # -- source ---------------------------------------------------------------

    def start(self) -> None:
        """A probe per VM in the client; each answers once it runs."""
        p = self.plan
        for name, nic in self.nics.items():
            command = probe_command(p.python, nic.ip, ECHO_PORT, p.interval_ms,
                                    p.max_seconds, p.tcp, p.load, p.ready_timeout)
            probe = self._probes[name] = ProbeSession(p.target, command, name)
            ready = probe.start(p.ready_timeout + 30.0)
            log.info("%s: network probe from %s to %s:%d running (%s)", name, p.client,
                     nic.ip, ECHO_PORT, ready)

    def switched(self) -> None:
        """The migration completed: later echoes come from the destination."""
        for probe in self._probes.values():
            probe.mark()

    def finish(self) -> dict[str, dict[str, Any]]:
        for name, probe in list(self._probes.items()):
            self.results[name] = probe.finish(self.plan.recover_timeout)
            del self._probes[name]
            log.info("%s: network: %s", name, summary(self.results[name]))
        return self.results

    def close(self) -> None:
        for probe in self._probes.values():
            probe.close()
        self._probes.clear()

    # -- destination ------------------------------------------------------------

    def check_destination(self, hostid: str, stats: Optional[Mapping[str, Any]] = None
                          ) -> dict[str, dict[str, Any]]:
        """Where this host's bridge has learned each guest's MAC now (no wait
        for a guest whose migration did not complete, per the source's `stats`)."""
        findings: dict[str, dict[str, Any]] = {}
        for name, nic in self.nics.items():
            start = time.monotonic()
            status = ((stats or {}).get(name) or {}).get("status", "completed")
            try:
                port = fdb.wait_port(self.plan.bridge, nic.mac, nic.ifname,
                                     self.plan.fdb_timeout if status == "completed" else 0)
                links = fdb.uplinks(self.plan.bridge)
                error = ""
            except GuestCheckError as err:
                port, links, error = None, {}, str(err)
            findings[name] = {"host": hostid, "bridge": self.plan.bridge, "mac": nic.mac,
                              "tap": nic.ifname, "fdb_port": port,
                              "fdb_on_tap": port == nic.ifname,
                              "fdb_wait_ms": round((time.monotonic() - start) * 1000, 1),
                              "uplinks": links, "error": error}
            log.info("%s: %s's bridge %s has %s on %s (tap %s), uplinks %s", name, hostid,
                     self.plan.bridge, nic.mac, port, nic.ifname, links)
        return findings

    # -- both -------------------------------------------------------------------

    def record(self, stats: dict[str, dict[str, Any]], dst: str,
               findings: Optional[Mapping[str, Any]],
               source_gone: Collection[str] = ()) -> list[str]:
        """Put each VM's network figures into its stats; the problems found.
        `source_gone`: VMs whose source QEMU no longer runs."""
        problems = []
        for name, nic in self.nics.items():
            result = dict(self.results.get(name) or {})
            found = (findings or {}).get(name) or {}
            # a migration that failed (on purpose or not) left the guest where
            # it was: no port of the destination's to prove
            moved = (stats.get(name) or {}).get("status") == "completed"
            entry = {"ip": nic.ip, "mac": nic.mac, "model": nic.model,
                     "client": self.plan.client, **result, "fdb": found, "moved": moved,
                     "source_gone": name in source_gone}
            stats.setdefault(name, {})["network"] = entry
            problems += network_problems(name, dst, nic, self.plan, entry)
        return problems


def summary(result: Mapping[str, Any]) -> str:
    return (f"longest gap {result.get('longest_gap_ms')} ms, "
            f"{result.get('lost')} of {result.get('sent')} lost, "
            f"first echo {result.get('first_reply_after_mark_ms')} ms after completion, "
            f"TCP {'alive' if result.get('tcp_alive_after') else result.get('tcp_error_after') or result.get('tcp_error') or 'not checked'}")


def network_problems(name: str, dst: str, nic: NicConfig, plan: NetCheckPlan,
                     entry: Mapping[str, Any]) -> list[str]:
    """What a migration's network record shows wrong, each naming the network."""
    if not entry.get("moved", True) and entry.get("source_gone"):
        # not migrated and its source QEMU gone: no guest left to answer (the
        # migration's own checks judge that: a death, or a defect expected)
        return []
    where = f"{name} ({nic.ip}, {nic.mac}) after migration to {dst}"
    fdb_found = entry.get("fdb") or {}
    down = [f"{link} is {state}" for link, state in (fdb_found.get("uplinks") or {}).items()
            if state not in ("UP", "UNKNOWN")]
    lost_link = f"; {dst}'s link to the guest segment: {', '.join(down)}" if down else ""
    out = []
    if not entry.get("replies_after_mark"):
        out.append(f"{where}: guest network lost: no echo at the client {plan.client} "
                   f"within {plan.recover_timeout:.0f} s of the switchover{lost_link}")
    if plan.tcp:
        if not entry.get("tcp_opened"):
            out.append(f"{where}: no TCP connection to the guest before the migration: "
                       f"{entry.get('tcp_error')}")
        elif not entry.get("tcp_alive_after"):
            out.append(f"{where}: the TCP connection opened before the migration carries "
                       f"no data after it: {entry.get('tcp_error_after')}{lost_link}")
    if fdb_found and entry.get("moved", True) and not fdb_found.get("fdb_on_tap"):
        out.append(f"{where}: {dst}'s bridge {fdb_found.get('bridge')} has the guest's MAC "
                   f"on {fdb_found.get('fdb_port') or 'no port'}, not on its tap "
                   f"{fdb_found.get('tap')} {fdb_found.get('error') or ''}".rstrip())
    return out


__all__ = ["NetCheckPlan", "NetworkCheckError", "NetworkChecks", "network_problems",
           "summary"]
