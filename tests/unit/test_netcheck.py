"""Network checks: the probe against a local echo server, fdb parsing, verdict rules."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import pytest

from multihost_migration.netcheck import NetCheckPlan, NetworkChecks, network_problems
from multihost_migration.netcheck.fdb import parse_fdb
from multihost_migration.netcheck.session import PROBE_SOURCE, probe_command
from multihost_migration.qemu.netdev import NicConfig

NIC = NicConfig(ip="127.0.0.1", mac="52:54:00:aa:bb:cc", ifname="mhmtap")
PLAN = NetCheckPlan()


class Echo:
    """UDP + TCP echo on 127.0.0.1, which can go silent (a migration)."""

    def __init__(self) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.create_server(("127.0.0.1", self.port))
        self.silent = threading.Event()
        self.stop = threading.Event()
        threading.Thread(target=self._udp, daemon=True).start()
        threading.Thread(target=self._tcp, daemon=True).start()

    def _udp(self) -> None:
        self.udp.settimeout(0.05)
        while not self.stop.is_set():
            try:
                data, peer = self.udp.recvfrom(64)
            except socket.timeout:
                continue
            if not self.silent.is_set():
                self.udp.sendto(data, peer)

    def _tcp(self) -> None:
        conn, _ = self.tcp.accept()
        with conn:
            conn.settimeout(0.1)
            while not self.stop.is_set():
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                if not data:
                    return
                conn.sendall(data)


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.stop.set()


def run_probe(port: int, lines: list[tuple[float, str]], tcp: bool = True,
              max_s: float = 20) -> list[dict[str, Any]]:
    cmd = [sys.executable, str(PROBE_SOURCE), "127.0.0.1", str(port), "5", str(max_s),
           "1" if tcp else "0", "0", "5"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    out = [json.loads(proc.stdout.readline())]
    for delay, line in lines:
        time.sleep(delay)
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        out.append(json.loads(proc.stdout.readline()))
    proc.stdin.close()
    proc.wait(10)
    return out


def test_probe_measures_the_gap_and_keeps_tcp(echo: Echo) -> None:
    def outage() -> None:
        time.sleep(0.4)
        echo.silent.set()
        time.sleep(0.3)
        echo.silent.clear()
    threading.Thread(target=outage, daemon=True).start()
    out = run_probe(echo.port, [(0.55, "mark"), (0.5, "finish 5")])
    assert out[0]["ready"]["tcp_opened"] is True
    result = out[-1]["result"]
    assert 250 <= result["longest_gap_ms"] <= 600, result
    assert result["lost"] >= 30 and result["sent"] > result["received"] > 0
    assert result["replies_after_mark"] > 0 and result["tcp_alive_after"] is True


def test_silence_before_the_first_echo_is_not_downtime(echo: Echo) -> None:
    """A guest that first answers 0.5 s into the probe (the client's stale
    ARP entry, seen on the lab) and never stops: no gap of 0.5 s."""
    echo.silent.set()
    threading.Timer(0.5, echo.silent.clear).start()
    out = run_probe(echo.port, [(0.3, "mark"), (0.0, "finish 5")], tcp=True)
    result = out[-1]["result"]
    assert out[0]["ready"]["t"] >= 0.45 and result["received"] > 0
    assert result["longest_gap_ms"] < 300, result


def test_probe_reports_a_guest_that_never_comes_back(echo: Echo) -> None:
    echo.silent.set()
    out = run_probe(echo.port, [(0.2, "mark"), (0.0, "finish 0.5")], tcp=False)
    result = out[-1]["result"]
    assert result["tcp_opened"] is None   # not asked for
    assert result["replies_after_mark"] == 0 and result["received"] == 0
    assert result["longest_gap_ms"] >= 600


def test_probe_stops_itself_at_its_deadline(echo: Echo) -> None:
    start = time.monotonic()
    cmd = [sys.executable, str(PROBE_SOURCE), "127.0.0.1", str(echo.port), "5", "1", "0",
           "0", "1"]
    proc = subprocess.run(cmd, stdin=subprocess.PIPE, capture_output=True, text=True,
                          timeout=10, input=None)
    assert time.monotonic() - start < 5
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert "ready" in lines[0] and "result" in lines[-1]


def test_probe_command_sends_the_probe_source() -> None:
    cmd = probe_command("python3", "198.19.0.101", 7, 5, 600, True, False, 30)
    assert cmd.startswith("python3 -c ")
    assert cmd.endswith(" 198.19.0.101 7 5 600 1 0 30 1")   # 1: forget the neighbour
    assert probe_command("python3", "h", 7, 5, 600, True, False, 30, False).endswith(" 30 0")
    assert "def main(argv" in cmd


FDB = json.dumps([
    {"mac": "33:33:00:00:00:01", "ifname": "br-guest", "flags": ["self"],
     "state": "permanent"},
    {"mac": "52:54:00:AA:BB:CC", "ifname": "mhmtap", "flags": [], "master": "br-guest",
     "state": ""},
    {"mac": "aa:aa:aa:aa:aa:aa", "ifname": "gseg", "flags": [], "master": "br-guest",
     "state": ""},
    {"mac": "ae:ce:9b:5c:e2:27", "ifname": "mhmtap", "master": "br-guest",
     "state": "permanent"},
])


def test_parse_fdb_keeps_learned_entries() -> None:
    entries = parse_fdb(FDB)
    assert [(e.mac, e.port) for e in entries] == [("52:54:00:aa:bb:cc", "mhmtap"),
                                                  ("aa:aa:aa:aa:aa:aa", "gseg")]


def good_entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"replies_after_mark": 10, "tcp_opened": True,
                             "tcp_alive_after": True,
                             "fdb": {"fdb_on_tap": True, "uplinks": {"gseg": "UP"}}}
    entry.update(changes)
    return entry


def test_a_healthy_record_has_no_problem() -> None:
    assert network_problems("vm1", "h2", NIC, PLAN, good_entry()) == []


def test_lost_network_names_the_link() -> None:
    entry = good_entry(replies_after_mark=0, tcp_alive_after=False,
                       tcp_error_after="timed out",
                       fdb={"fdb_on_tap": True, "uplinks": {"gseg": "DOWN"}})
    problems = network_problems("vm1", "h2", NIC, PLAN, entry)
    assert "guest network lost" in problems[0] and "gseg is DOWN" in problems[0]
    assert "h2's link to the guest segment" in problems[0]
    assert "TCP connection opened before the migration" in problems[1]


def test_fdb_on_the_wrong_port_is_a_problem() -> None:
    entry = good_entry(fdb={"fdb_on_tap": False, "fdb_port": "gseg", "tap": "mhmtap",
                            "bridge": "br-guest", "uplinks": {}})
    problems = network_problems("vm1", "h2", NIC, PLAN, entry)
    assert problems == [f"vm1 (127.0.0.1, {NIC.mac}) after migration to h2: h2's bridge "
                        "br-guest has the guest's MAC on gseg, not on its tap mhmtap"]


def test_a_guest_that_stayed_needs_no_fdb_on_the_destination() -> None:
    """A failed migration (validate_uuid's refused stream, a cancel): the
    guest runs on at the source, the destination's bridge rightly has its
    MAC on the uplink; its network must still answer and TCP survive."""
    wrong_port = {"fdb_on_tap": False, "fdb_port": "gseg", "uplinks": {}}
    assert network_problems("vm1", "h2", NIC, PLAN,
                            good_entry(fdb=wrong_port, moved=False)) == []
    assert network_problems("vm1", "h2", NIC, PLAN,
                            good_entry(fdb=wrong_port, moved=False, replies_after_mark=0))
    checks = NetworkChecks.for_vms([("vm1", {"guest_network": "yes", "job_id": "j"})])
    assert checks is not None
    checks.results["vm1"] = {"replies_after_mark": 3, "tcp_opened": True,
                             "tcp_alive_after": True}
    stats: dict[str, dict[str, Any]] = {"vm1": {"status": "failed"}}
    assert checks.record(stats, "h2", {"vm1": wrong_port}) == []
    assert stats["vm1"]["network"]["moved"] is False
    stats = {"vm1": {"status": "completed"}}
    assert checks.record(stats, "h2", {"vm1": wrong_port}) != []


def test_no_guest_left_to_answer_is_not_a_network_problem() -> None:
    """Not migrated and its source QEMU gone (7.2 accepting migrate_cancel in
    postcopy loses the guest): recorded, judged by the migration's checks."""
    lost = good_entry(replies_after_mark=0, tcp_alive_after=False, moved=False)
    assert network_problems("vm1", "h2", NIC, PLAN, {**lost, "source_gone": True}) == []
    assert network_problems("vm1", "h2", NIC, PLAN, lost) != []
    assert network_problems("vm1", "h2", NIC, PLAN,
                            {**lost, "moved": True, "source_gone": True}) != []


def test_no_tcp_check_when_not_asked() -> None:
    plan = NetCheckPlan(tcp=False)
    assert network_problems("vm1", "h2", NIC, plan,
                            good_entry(tcp_opened=None, tcp_alive_after=None)) == []


def test_plan_and_checks_from_params() -> None:
    params = {"guest_network": "yes", "job_id": "j", "netcheck_tcp": "no",
              "netcheck_interval_ms": "2", "net_load": "yes"}
    plan = NetCheckPlan.from_params(params)
    assert plan is not None and not plan.tcp and plan.load and plan.interval_ms == 2.0
    assert NetCheckPlan.from_params({**params, "netcheck": "no"}) is None
    assert NetCheckPlan.from_params({"guest_network": "no"}) is None
    checks = NetworkChecks.for_vms([("vm1", params), ("vm2", {"guest_network": "no"})])
    assert checks is not None and list(checks.nics) == ["vm1"]
    assert NetworkChecks.for_vms([("vm1", {})]) is None
    stats: dict[str, dict[str, Any]] = {"vm1": {"status": "completed"}}
    checks.results["vm1"] = {"replies_after_mark": 3, "longest_gap_ms": 50.0}
    problems = checks.record(stats, "h2", {"vm1": {"fdb_on_tap": True}})
    assert problems == [] and stats["vm1"]["network"]["longest_gap_ms"] == 50.0
