"""Unit tests of multihost_migration.sync: wire, sessions, server and client
over real loopback sockets."""

from __future__ import annotations

import pickle
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest

from multihost_migration.errors import (ConfigError, SyncAborted, SyncBarrierTimeout,
                                        SyncConnectTimeout, SyncError, SyncProtocolError,
                                        SyncTimeout)
from multihost_migration.sync import SyncData, SyncServer, coerce_secret, new_secret, wire
from multihost_migration.sync.messages import Abort, Bye, Join, Sync, parse_request
from multihost_migration.sync.session import SessionTable
from tests.unit._sync_raw import RawClient, closed_by_server

SECRET = coerce_secret(new_secret())
HOSTS = ["host1", "host2", "host3"]


@pytest.fixture
def server() -> Iterator[SyncServer]:
    with SyncServer("127.0.0.1", 0, SECRET, handshake_timeout=0.5,
                    frame_timeout=0.5) as srv:
        yield srv
    assert srv._thread is not None and not srv._thread.is_alive()


def client(srv: SyncServer, host: str, session: str = "s1",
           hosts: List[str] = HOSTS, secret: Any = SECRET) -> SyncData:
    return SyncData("127.0.0.1", host, hosts, session, port=srv.port, secret=secret)


def run_hosts(hosts: List[str], work: Callable[[str], Any],
              timeout: float = 10.0) -> Dict[str, Any]:
    """Run work(host) in one thread per host; {host: result or exception}."""
    results: Dict[str, Any] = {}

    def target(host: str) -> None:
        try:
            results[host] = work(host)
        except Exception as err:  # collected and asserted by the caller
            results[host] = err

    threads = [threading.Thread(target=target, args=(h,), daemon=True) for h in hosts]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0))
    assert not any(t.is_alive() for t in threads), "a host thread hung"
    return results


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


# -- wire ---------------------------------------------------------------------

def test_secret_forms() -> None:
    hexed = new_secret()
    assert len(hexed) == 64 and coerce_secret(hexed) == bytes.fromhex(hexed)
    assert coerce_secret("not hex but long enough!") == b"not hex but long enough!"
    assert coerce_secret(b"\x00" * 16) == b"\x00" * 16
    with pytest.raises(ConfigError, match="too short"):
        coerce_secret("abcd")


def test_depth_check() -> None:
    assert wire.depth_ok(nested(100)) and wire.depth_ok("flat") and wire.depth_ok([])
    assert not wire.depth_ok(nested(101))
    assert not wire.depth_ok([1, {"a": [2, nested(99)]}])


def test_decoder_reassembles_byte_by_byte() -> None:
    frames = [wire.pack(b"m" * 32, wire.encode_body({"op": "x", "n": i})) for i in range(3)]
    dec = wire.FrameDecoder("peer")
    got = []
    for byte in b"".join(frames):
        dec.feed(bytes([byte]))
        frame = dec.next_frame()
        if frame:
            got.append(wire.decode_body(frame[1], "peer")["n"])
    assert got == [0, 1, 2] and dec.buffered == 0


def test_decoder_rejects_oversized_header_before_body() -> None:
    dec = wire.FrameDecoder("peer", max_frame=1024)
    with pytest.raises(SyncProtocolError, match="exceeds the maximum of 1024"):
        dec.feed(wire.HEADER.pack(1 << 30))
    with pytest.raises(SyncProtocolError, match="too short"):
        wire.FrameDecoder("peer").feed(wire.HEADER.pack(3))


@pytest.mark.parametrize("body", [b"[1]", b'{"op": 3}', b"\xff\xfe", b'{"op":"x","v":NaN}',
                                  b"[" * 100000, b"garbage"])
def test_decode_body_rejects(body: bytes) -> None:
    with pytest.raises(SyncProtocolError, match="peer"):
        wire.decode_body(body, "peer")


def test_error_messages_carry_evidence() -> None:
    err = SyncBarrierTimeout("sess", "ready", "host1", 2.5, ["host2", "host3"])
    assert str(err) == ("sync session 'sess' point 'ready': host1 timed out after 2.5 s "
                        "waiting for host2, host3")
    assert "no answer from the sync server" in str(SyncBarrierTimeout("s", "t", "h", 1, None))
    assert str(SyncConnectTimeout("10.0.0.1", 99, 3.0, "refused")) == (
        "sync server 10.0.0.1:99 not reachable within 3.0 s (last error: refused)")
    assert str(SyncProtocolError("1.2.3.4:5", "bad MAC")) == (
        "sync protocol error from 1.2.3.4:5: bad MAC")
    assert isinstance(err, SyncTimeout) and isinstance(err, SyncError)


# -- request parsing ----------------------------------------------------------

def test_parse_valid_requests() -> None:
    assert parse_request({"op": "join", "session": "s", "host": "a", "hosts": ["a", "b"]},
                         "p") == Join("s", "a", ("a", "b"))
    assert parse_request({"op": "sync", "tag": "t", "timeout": 3, "data": [1]}, "p") == (
        Sync("t", [1], 3.0))
    assert parse_request({"op": "abort", "reason": "r" * 5000}, "p") == Abort("r" * 4096)
    assert parse_request({"op": "bye"}, "p") == Bye()


@pytest.mark.parametrize("msg, match", [
    ({"op": "join", "session": "s", "host": "a", "hosts": "a"}, "'hosts'"),
    ({"op": "join", "session": "s", "host": "a", "hosts": [1]}, "'hosts'"),
    ({"op": "join", "session": "", "host": "a", "hosts": ["a"]}, "'session'"),
    ({"op": "join", "session": "s", "host": "a" * 257, "hosts": ["a"]}, "'host'"),
    ({"op": "sync", "tag": "t", "timeout": True}, "'timeout'"),
    ({"op": "sync", "tag": "t", "timeout": -1}, "'timeout'"),
    ({"op": "sync", "tag": "t", "timeout": 1e9}, "'timeout'"),
    ({"op": "sync", "tag": 5, "timeout": 1}, "'tag'"),
    ({"op": "sync", "tag": "t", "timeout": 1, "data": nested(101)}, "nested deeper"),
    ({"op": "abort"}, "'reason'"),
    ({"op": "exec", "code": "rm -rf /"}, "unknown op 'exec'"),
])
def test_parse_rejects_bad_requests(msg: Dict[str, Any], match: str) -> None:
    with pytest.raises(SyncProtocolError, match=match):
        parse_request(msg, "peer")


# -- session table (no sockets) -------------------------------------------------

def test_table_completes_when_all_hosts_arrive() -> None:
    table: SessionTable[str] = SessionTable()
    for conn, host in (("c1", "a"), ("c2", "b")):
        assert table.join(conn, "s", host, ["a", "b"], 0.0)[0][1]["op"] == "joined"
    assert table.arrive("c1", "s", "t", 1, 10.0, 0.0) == []
    out = table.arrive("c2", "s", "t", 2, 10.0, 0.0)
    assert sorted(c for c, _ in out) == ["c1", "c2"]
    assert out[0][1] == {"op": "result", "tag": "t", "data": {"a": 1, "b": 2}}
    assert table.waiting() == 0


def test_table_rejects_host_list_mismatch_and_duplicate_arrival() -> None:
    table: SessionTable[str] = SessionTable()
    table.join("c1", "s", "a", ["a", "b"], 0.0)
    assert table.join("c2", "s", "b", ["a", "b", "c"], 0.0)[0][1]["op"] == "error"
    assert table.join("c3", "s", "z", ["a", "z"], 0.0)[0][1]["op"] == "error"
    assert table.arrive("c1", "s", "t", None, 5.0, 0.0) == []
    assert table.arrive("c1", "s", "t", None, 5.0, 0.0)[0][1]["op"] == "error"


def test_table_expiry_times_out_and_aborts_the_others() -> None:
    table: SessionTable[str] = SessionTable()
    for conn, host in (("c1", "a"), ("c2", "b"), ("c3", "c")):
        table.join(conn, "s", host, ["a", "b", "c"], 0.0)
    table.arrive("c1", "s", "t", None, 5.0, 0.0)
    table.arrive("c2", "s", "t", None, 50.0, 1.0)
    assert table.expire(4.9) == [] and table.next_deadline() == 5.0
    out = dict(table.expire(5.0))
    assert out["c1"] == {"op": "timeout", "tag": "t", "missing": ["c"], "timeout": 5.0}
    assert out["c2"]["op"] == "aborted" and out["c2"]["host"] == "a"
    assert "waiting for c" in out["c2"]["reason"]
    # a late host learns of the abort instead of waiting
    assert table.join("c9", "s", "c", ["a", "b", "c"], 6.0)[0][1]["op"] == "aborted"


def test_table_lost_connection_aborts_but_bye_does_not() -> None:
    table: SessionTable[str] = SessionTable(tombstone_ttl=10.0)
    table.join("c1", "s", "a", ["a", "b"], 0.0)
    table.join("c2", "s", "b", ["a", "b"], 0.0)
    assert table.leave("c1", "s", True, "bye", 0.0) == []
    assert table.members("s") == {"b"}
    out = table.leave("c2", "s", False, "EOF", 0.0)
    assert out == [] and table.aborted["s"].host == "b"
    assert table.join("c3", "s", "a", ["a", "b"], 5.0)[0][1]["op"] == "aborted"
    assert table.join("c3", "s", "a", ["a", "b"], 11.0)[0][1]["op"] == "joined"


# -- server and client over loopback --------------------------------------------

def test_sync_exchanges_data_keyed_by_host_id(server: SyncServer) -> None:
    def work(host: str) -> Any:
        with client(server, host) as sync:
            first = sync.sync({"port": 5000 + HOSTS.index(host)}, timeout=5)
            sync.barrier("ready", timeout=5)
            second = sync.sync(host.upper(), timeout=5)
            return first, second

    results = run_hosts(HOSTS, work)
    expected = ({"host1": {"port": 5000}, "host2": {"port": 5001}, "host3": {"port": 5002}},
                {"host1": "HOST1", "host2": "HOST2", "host3": "HOST3"})
    assert results == {h: expected for h in HOSTS}
    assert server.session_members("s1") == {"members": [], "aborted": None}


def test_sessions_are_independent(server: SyncServer) -> None:
    def work(host: str) -> Any:
        session = "a" if host in ("h1", "h2") else "b"
        hosts = ["h1", "h2"] if session == "a" else ["h3", "h4"]
        with client(server, host, session, hosts) as sync:
            return sync.sync(session, timeout=5)

    results = run_hosts(["h1", "h2", "h3", "h4"], work)
    assert results["h1"] == {"h1": "a", "h2": "a"} and results["h4"] == {"h3": "b", "h4": "b"}


def test_missing_host_times_out_naming_it(server: SyncServer) -> None:
    def work(host: str) -> Any:
        with client(server, host) as sync:
            return sync.barrier("never", timeout=0.5 if host == "host1" else 5)

    start = time.monotonic()
    results = run_hosts(["host1", "host2"], work)
    assert time.monotonic() - start < 3
    err = results["host1"]
    assert isinstance(err, SyncBarrierTimeout) and err.missing == ["host3"]
    assert "'s1'" in str(err) and "host3" in str(err) and "0.5 s" in str(err)
    # host2 is released by host1's timeout instead of waiting its full 5 s
    assert isinstance(results["host2"], SyncAborted) and results["host2"].host == "host1"
    assert "host3" in results["host2"].reason


def test_abort_releases_all_waiting_peers_fast(server: SyncServer) -> None:
    released: Dict[str, float] = {}
    ready = threading.Barrier(3)

    def work(host: str) -> Any:
        with client(server, host) as sync:
            sync.barrier("warm", timeout=5)
            if host == "host1":
                ready.wait(5)
                time.sleep(0.2)  # let the others block in their barrier
                sync.abort("disk check failed")
                return time.monotonic()
            ready.wait(5)
            try:
                sync.barrier("never", timeout=30)
            finally:
                released[host] = time.monotonic()

    results = run_hosts(HOSTS, work)
    aborted_at = results["host1"]
    for host in ("host2", "host3"):
        err = results[host]
        assert isinstance(err, SyncAborted), err
        assert (err.session, err.host, err.reason) == ("s1", "host1", "disk check failed")
        assert released[host] - aborted_at < 0.1
    # a host that joins after the abort learns it at once
    with client(server, "host2") as late:
        with pytest.raises(SyncAborted, match="disk check failed"):
            late.sync(timeout=5)


def test_exception_in_with_block_aborts_session(server: SyncServer) -> None:
    def work(host: str) -> Any:
        with client(server, host, hosts=["host1", "host2"]) as sync:
            sync.barrier("start", timeout=5)
            if host == "host1":
                raise RuntimeError("guest did not boot")
            return sync.barrier("end", timeout=10)

    results = run_hosts(["host1", "host2"], work)
    assert isinstance(results["host1"], RuntimeError)
    err = results["host2"]
    assert isinstance(err, SyncAborted) and err.host == "host1"
    assert "RuntimeError: guest did not boot" in err.reason and err.kind == "failed"


def test_an_interruption_reaches_the_peers_as_its_kind(server: SyncServer) -> None:
    """The kind travels in the aborted frame: peers tell an interruption from
    a failure without reading the reason's text."""
    from multihost_migration.verdicts import Interrupted

    def work(host: str) -> Any:
        try:
            with client(server, host, hosts=["host1", "host2"]) as sync:
                sync.barrier("start", timeout=5)
                if host == "host1":
                    raise Interrupted("interrupted: received SIGINT")
                return sync.barrier("end", timeout=10)
        except Interrupted as stop:   # a BaseException: run_hosts would not keep it
            return stop

    results = run_hosts(["host1", "host2"], work)
    assert isinstance(results["host1"], Interrupted)
    err = results["host2"]
    assert isinstance(err, SyncAborted) and err.host == "host1", err
    assert err.kind == "interrupted" and err.reason.startswith("Interrupted: interrupted")


def test_an_abort_of_an_unknown_kind_is_refused() -> None:
    from multihost_migration.errors import SyncProtocolError
    from multihost_migration.sync.messages import parse_request
    with pytest.raises(SyncProtocolError, match="kind"):
        parse_request({"op": "abort", "reason": "x", "kind": "lost"}, "peer")


def test_disconnect_mid_session_aborts_it(server: SyncServer) -> None:
    def work(host: str) -> Any:
        sync = client(server, host, hosts=["host1", "host2"])
        sync.barrier("start", timeout=5)
        if host == "host1":
            time.sleep(0.1)
            assert sync._sock is not None
            sync._sock.close()  # the process died: no bye
            return None
        try:
            return sync.barrier("end", timeout=10)
        finally:
            sync.close()

    results = run_hosts(["host1", "host2"], work)
    err = results["host2"]
    assert isinstance(err, SyncAborted) and err.host == "host1"
    assert "lost contact with host1" in err.reason and "lost contact with host1" in str(err)
    assert err.kind == "lost" and str(err).startswith("lost contact with host1")


def test_connection_refused_is_retried_until_server_starts() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    srv = SyncServer("127.0.0.1", port, SECRET)

    def work(host: str) -> Any:
        if host == "master":
            time.sleep(0.4)
            srv.start()
            host = "host1"
        with SyncData("127.0.0.1", host, ["host1", "host2"], "late", port=port,
                      secret=SECRET.hex()) as sync:
            return sync.sync(host, timeout=5)

    try:
        results = run_hosts(["master", "host2"], work)
    finally:
        srv.stop()
    assert results["host2"] == {"host1": "host1", "host2": "host2"}


def test_no_server_gives_connect_timeout() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with SyncData("127.0.0.1", "h", ["h"], port=port, secret=SECRET) as sync:
        start = time.monotonic()
        with pytest.raises(SyncConnectTimeout, match=f"127.0.0.1:{port} not reachable"):
            sync.barrier("x", timeout=0.3)
        assert 0.25 < time.monotonic() - start < 1.5


def test_wrong_secret_is_rejected(server: SyncServer) -> None:
    with client(server, "host1", secret=b"some other job's secret") as sync:
        with pytest.raises(SyncProtocolError, match="wrong secret"):
            sync.barrier("x", timeout=2)
    assert server.stats["rejected_mac"] >= 1


def test_inconsistent_host_lists_are_refused(server: SyncServer) -> None:
    with client(server, "host1", "m", ["host1", "host2"]) as first:
        first._ensure_joined(time.monotonic() + 2, "join", 2.0)
        with client(server, "host2", "m", ["host2", "host1"]) as second:
            with pytest.raises(SyncProtocolError, match="has hosts"):
                second.barrier("x", timeout=2)
            assert second._sock is None and second.state.value == "new"
        assert server.session_members("m")["members"] == ["host1"]


@pytest.mark.parametrize("data, match", [
    (object(), "not JSON-serialisable"), (float("nan"), "not JSON-serialisable"),
    (nested(101), "nested deeper than 100"),
    ("\udc80", "not JSON-serialisable"), ("x" * (1 << 20), "too large"),
])
def test_bad_data_fails_locally_and_session_stays_usable(server: SyncServer, data: Any,
                                                         match: str) -> None:
    def work(host: str) -> Any:
        with client(server, host, hosts=["host1", "host2"]) as sync:
            if host == "host1":
                with pytest.raises(SyncProtocolError, match=match):
                    sync.sync(data, timeout=2)
            return sync.sync([host, {"3": None}], timeout=5)  # both number this #1

    results = run_hosts(["host1", "host2"], work)
    expected = {"host1": ["host1", {"3": None}], "host2": ["host2", {"3": None}]}
    assert results == {"host1": expected, "host2": expected}


def test_silent_server_gives_timeout_naming_the_point() -> None:
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(1)
        with SyncData("127.0.0.1", "h1", ["h1"], "quiet", port=mute.getsockname()[1],
                      secret=SECRET) as sync:
            start = time.monotonic()
            with pytest.raises(SyncBarrierTimeout, match="'quiet' point 'ready': h1 got no "
                                                         "answer .* within 0.3 s"):
                sync.barrier("ready", timeout=0.3)
            assert time.monotonic() - start < 1.5


def test_constructor_checks_without_io() -> None:
    with pytest.raises(ConfigError, match="not one of the session hosts"):
        SyncData("127.0.0.1", "x", ["a"], secret=SECRET)
    sync = SyncData("192.0.2.1", "a", ["a", "b"], secret=SECRET)
    assert sync.session_id == "a,b" and sync._sock is None


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MHM_SYNC_SECRET", raising=False)
    with pytest.raises(ConfigError, match="MHM_SYNC_SECRET"):
        SyncServer("127.0.0.1", 0)
    monkeypatch.setenv("MHM_SYNC_SECRET", SECRET.hex())
    with SyncServer("127.0.0.1", 0) as srv:
        with SyncData("127.0.0.1", "h", ["h"], port=srv.port) as sync:
            assert sync.sync(7, timeout=2) == {"h": 7}


def test_server_stop_fails_waiting_clients_fast() -> None:
    srv = SyncServer("127.0.0.1", 0, SECRET)
    srv.start()
    try:
        with client(srv, "host1", hosts=["host1", "host2"]) as sync:
            timer = threading.Timer(0.2, srv.stop)
            timer.start()
            start = time.monotonic()
            with pytest.raises(SyncError, match=r"lost connection .*\(session 's1', host host1\)"):
                sync.barrier("x", timeout=10)
            assert time.monotonic() - start < 2
            timer.join()
    finally:
        srv.stop()
    assert srv.state.value == "stopped"


def test_server_reports_busy_port() -> None:
    with SyncServer("127.0.0.1", 0, SECRET) as srv:
        with pytest.raises(SyncError, match=f"cannot listen on 127.0.0.1:{srv.port}"):
            SyncServer("127.0.0.1", srv.port, SECRET).start()


# -- hostile peers ----------------------------------------------------------------

def test_replayed_frames_are_rejected(server: SyncServer) -> None:
    with RawClient(server.port, SECRET) as first:
        assert first.join("replay", "host1", ["host1", "host2"])["op"] == "joined"
        first.send({"op": "sync", "tag": "t", "data": "evil", "timeout": 5})
        captured = list(first.sent)
        # the same frame again in the same connection: seq mismatch, dropped
        first.raw(captured[-1])
        assert closed_by_server(first.sock, 2) is not None
    # the whole conversation replayed in a new connection: hello passes, join fails
    with RawClient(server.port, SECRET) as second:
        for frame in captured[:2]:
            second.raw(frame)
        assert closed_by_server(second.sock, 2) is not None
    assert server.stats["rejected_mac"] >= 2


@pytest.mark.parametrize("payload", [
    pickle.dumps({"op": "sync"}),
    b"\x00\x01garbage" * 10,
    wire.HEADER.pack(1 << 30) + b"x" * 100,
    wire.pack(b"\x00" * 32, b'{"op":"hello","v":1,"nonce":"' + b"00" * 16 + b'"}'),
])
def test_hostile_payload_is_dropped(server: SyncServer, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(payload)
        assert closed_by_server(sock, 2) == b""


def test_deeply_nested_data_does_not_break_the_server(server: SyncServer) -> None:
    with RawClient(server.port, SECRET) as raw:
        assert raw.join("deep", "h", ["h"])["op"] == "joined"
        for depth, expected in ((99, "result"), (101, "error"), (500, "error"),
                                (2000, "dropped")):
            body = ('{"op":"sync","tag":"t%d","timeout":5,"data":' % depth + "[" * depth
                    + "]" * depth + "}").encode()
            raw.raw(wire.pack(wire.frame_mac(raw.key, wire.C2S, raw.tx_seq, body), body))
            raw.tx_seq += 1
            try:
                op = raw.recv()["op"]
            except ConnectionError:
                op = "dropped"  # too deep to parse: a protocol error
            assert op == expected, depth
    assert server._thread is not None and server._thread.is_alive()
    with client(server, "h", "after-deep", ["h"]) as sync:
        assert sync.sync("ok", timeout=2) == {"h": "ok"}


def test_client_that_never_reads_does_not_block_others(server: SyncServer) -> None:
    with RawClient(server.port, SECRET) as hog:
        hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert hog.join("hog", "h", ["h"])["op"] == "joined"
        # 10 MB of results that it never reads: more than the kernel buffers
        # on loopback (sender <= 4 MB here), so the server must queue them.
        for i in range(1000):
            hog.send({"op": "sync", "tag": f"t{i}", "timeout": 5, "data": "x" * 10000})
        # The others start once the server really holds a backlog for the hog
        # (its reads of the hog's frames may lag behind the sends above).
        deadline = time.monotonic() + 10
        while server.stats["send_backlog"] == 0:
            assert time.monotonic() < deadline, f"the server never queued: {server.stats}"
            time.sleep(0.01)
        start = time.monotonic()

        def work(host: str) -> Any:
            with client(server, host, "beside-hog", ["host1", "host2"]) as sync:
                return [sync.sync(i, timeout=5) for i in range(10)][-1]

        results = run_hosts(["host1", "host2"], work)
        assert results["host1"] == {"host1": 9, "host2": 9}
        assert time.monotonic() - start < 3
        assert server.session_members("hog")["members"] == ["h"]   # queued, not dropped


def test_large_frame_before_authentication_is_dropped_at_once(server: SyncServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(wire.HEADER.pack(2000))  # fine later, too big for a hello
        start = time.monotonic()
        assert closed_by_server(sock, 2) == b""
        assert time.monotonic() - start < server.handshake_timeout


def test_silent_and_partial_clients_are_timed_out(server: SyncServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as idle, \
            socket.create_connection(("127.0.0.1", server.port)) as partial:
        partial.sendall(wire.HEADER.pack(100) + b"x")
        start = time.monotonic()
        assert closed_by_server(idle, 3) == b""
        assert closed_by_server(partial, 3) == b""
        assert time.monotonic() - start < 2
    assert server.stats["handshake_timeouts"] >= 2


def test_probe_during_barrier_does_not_disturb_correct_clients(server: SyncServer) -> None:
    """500 idle connections and hostile peers while two hosts sync."""
    other_key = coerce_secret(new_secret())
    hello = wire.encode_body({"op": "hello", "v": 1, "nonce": "00" * 16})
    hostile = [pickle.dumps({"op": "sync", "data": "x" * 100}), b"\xde\xad" * 300,
               wire.HEADER.pack(1 << 30), wire.pack(wire.hello_mac(other_key, hello), hello)]
    idle: List[socket.socket] = []
    evil: List[socket.socket] = []
    try:
        idle.extend(socket.create_connection(("127.0.0.1", server.port)) for _ in range(500))
        evil.extend(socket.create_connection(("127.0.0.1", server.port)) for _ in hostile)

        def work(host: str) -> Any:
            with client(server, host, "probe", ["host1", "host2"]) as sync:
                out = []
                for i in range(20):
                    if host == "host1" and i < len(hostile):
                        evil[i].sendall(hostile[i])  # in the middle of the barriers
                    out.append(sync.sync(i, timeout=5))
                return out[-1]

        results = run_hosts(["host1", "host2"], work)
        assert results == {h: {"host1": 19, "host2": 19} for h in ("host1", "host2")}
        assert [closed_by_server(sock, 2) for sock in evil] == [b""] * len(hostile)
    finally:
        for sock in idle + evil:
            sock.close()
    assert server.stats["evicted"] >= 500 - server.max_pending
    assert server.stats["rejected_mac"] >= 1 and server.stats["rejected"] >= 4


@pytest.mark.slow
def test_64_hosts_exchange_and_abort_releases_all_fast(server: SyncServer) -> None:
    hosts = [f"h{i}" for i in range(64)]
    released: Dict[str, float] = {}
    aborted_at: List[float] = []

    def work(host: str) -> Any:
        with client(server, host, "big", hosts) as sync:
            for i in range(20):
                assert sync.sync(i, timeout=20) == {h: i for h in hosts}
            if host == "h0":
                time.sleep(0.3)
                aborted_at.append(time.monotonic())
                sync.abort("h0 saw a bad checksum")
                return None
            try:
                sync.barrier("never", timeout=30)
            finally:
                released[host] = time.monotonic()

    results = run_hosts(hosts, work, timeout=60)
    assert all(isinstance(results[h], SyncAborted) for h in hosts[1:])
    worst = max(released.values()) - aborted_at[0]
    assert worst < 0.1, f"slowest peer released {worst * 1000:.1f} ms after abort()"
