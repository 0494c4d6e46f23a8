"""The controller's relay: report lines, their delivery, and a sync wait
ended by a relayed report (relay.py, SyncData.interrupt)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import pytest

from multihost_migration import relay
from multihost_migration.errors import PeerFailed
from multihost_migration.sync import SyncData, SyncServer

SECRET = "relay-test-secret"


@pytest.fixture(autouse=True)
def clean_relay() -> Iterator[None]:
    relay.reset()
    yield
    relay.reset()


def test_a_report_survives_the_line_it_travels_in() -> None:
    report = relay.PeerReport("failed", "h1", "FAIL", "vm1: stalled\nat 6.9 %\tfor 60 s")
    line = report.encode()
    assert "\n" not in line and line.startswith(relay.PREFIX)
    back = relay.decode(line + "\r\n")
    assert back == relay.PeerReport("failed", "h1", "FAIL", "vm1: stalled at 6.9 % for 60 s")
    assert back.describe() == "stopped because h1 failed: vm1: stalled at 6.9 % for 60 s"


@pytest.mark.parametrize("line", ["", "MHM-RELAY\tbogus\th1\tFAIL\tx", "MHM-RELAY\tfailed\t\tF\tx",
                                  "MHM-RELAY\tfailed\th1", "hello MHM-RELAY\tfailed\th1\tF\tx"])
def test_anything_else_is_not_a_report(line: str) -> None:
    assert relay.decode(line) is None


def test_listeners_get_reports_also_those_before_they_listened() -> None:
    early = relay.PeerReport("unresponsive", "h2", "ERROR", "no answer for 30 s")
    relay.deliver(early)
    got: list[relay.PeerReport] = []
    stop = relay.listen(got.append)
    late = relay.PeerReport("failed", "h3", "FAIL", "x")
    relay.deliver(late)
    stop()
    relay.deliver(relay.PeerReport("failed", "h4", "FAIL", "after stop"))
    assert got == [early, late]


def test_interrupt_ends_a_sync_wait_at_once() -> None:
    with SyncServer("127.0.0.1", 0, SECRET) as server:
        waiting = SyncData("127.0.0.1", "h2", ["h1", "h2"], "s", port=server.port, secret=SECRET)
        err = PeerFailed("h1", "vm1: migration stalled at 6.9 %")
        threading.Timer(0.3, waiting.interrupt, args=(err,)).start()
        start = time.monotonic()
        with pytest.raises(PeerFailed) as info:
            waiting.barrier("migrated", timeout=30)
        assert time.monotonic() - start < 5
        assert info.value is err
        waiting.close()


def test_interrupt_ends_connecting_to_an_unreachable_server() -> None:
    with socket.socket() as probe:      # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waiting = SyncData("127.0.0.1", "h2", ["h1", "h2"], "s", port=port, secret=SECRET)
    err = PeerFailed("h1", "gone", unresponsive=True)
    threading.Timer(0.3, waiting.interrupt, args=(err,)).start()
    start = time.monotonic()
    with pytest.raises(PeerFailed):
        waiting.barrier("ready", timeout=30)
    assert time.monotonic() - start < 5
    assert str(err) == "stopped because h1 became unresponsive: gone"


def test_reader_delivers_the_lines_of_its_stream() -> None:
    import os
    from multihost_migration.client.channel import start_relay_reader
    got: list[relay.PeerReport] = []
    relay.listen(got.append)
    rfd, wfd = os.pipe()
    with os.fdopen(rfd) as reader, os.fdopen(wfd, "w") as writer:
        thread = start_relay_reader(reader)
        writer.write("some echo\n" + relay.PeerReport("failed", "h1", "FAIL", "x").encode() + "\n")
        writer.close()
        thread.join(5)
    assert got == [relay.PeerReport("failed", "h1", "FAIL", "x")]


RELAY_PROBE = '''
import time
from multihost_migration import relay
from multihost_migration.verdicts import TestFail


def run(test, params, env):
    got = []
    relay.listen(got.append)
    print("PROBE-READY", flush=True)
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    raise TestFail(got[0].describe() if got else "no report")
'''


def test_the_client_job_hears_the_controller_on_its_stdin(tmp_path: "Path") -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path
    from multihost_migration.status import parse
    (tmp_path / "relay_probe.py").write_text(RELAY_PROBE)
    (tmp_path / "params.json").write_text(json.dumps({
        "shortname": "probe", "type": "relay_probe", "hostid": "h2",
        "scenario_dirs": str(tmp_path)}))
    proc = subprocess.Popen([sys.executable, "-m", "multihost_migration.client", "--params",
                             str(tmp_path / "params.json"), "--resultsdir", str(tmp_path / "r")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        while "PROBE-READY" not in proc.stdout.readline():
            pass
        proc.stdin.write(relay.PeerReport("failed", "h1", "FAIL", "QEMU killed").encode() + "\n")
        proc.stdin.flush()
        proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(10)
    fails = [e for e in parse((Path(tmp_path) / "r" / "status.log").read_text())
             if e.status == "FAIL"]
    assert fails and fails[0].reason == "stopped because h1 failed: QEMU killed"
    assert (tmp_path / "lock").exists()
