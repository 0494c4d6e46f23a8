"""Property tests: a live sync server under malformed, truncated, oversized,
unauthenticated and replayed frames keeps serving correct clients."""

from __future__ import annotations

import socket
import threading
from typing import Any, Dict, Iterator, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multihost_migration.sync import SyncData, SyncServer, coerce_secret, new_secret, wire
from tests.unit._sync_raw import RawClient, closed_by_server

SECRET = coerce_secret(new_secret())
OTHER_SECRET = coerce_secret(new_secret())
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def server() -> Iterator[SyncServer]:
    with SyncServer("127.0.0.1", 0, SECRET, max_frame=4096, handshake_timeout=0.3,
                    frame_timeout=0.3) as srv:
        yield srv


def correct_pair_completes(srv: SyncServer, session: str) -> None:
    """Two well-behaved hosts still complete a data exchange."""
    results: Dict[str, Any] = {}

    def work(host: str) -> None:
        with SyncData("127.0.0.1", host, ["a", "b"], session, port=srv.port,
                      secret=SECRET) as sync:
            results[host] = sync.sync(host, timeout=5)

    threads = [threading.Thread(target=work, args=(h,), daemon=True) for h in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert results == {h: {"a": "a", "b": "b"} for h in "ab"}


def send_and_expect_drop(srv: SyncServer, data: bytes, half_close: bool) -> None:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # already dropped by the server
        # no byte ever comes back to an unauthenticated peer; the server closes
        assert closed_by_server(sock, 3) == b""


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20)


@st.composite
def hostile_frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "length", "badmac", "othersecret", "truncated"]))
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=600))
    if kind == "length":
        length = draw(st.integers(min_value=4097, max_value=2**32 - 1) | st.integers(0, 33))
        return wire.HEADER.pack(length) + draw(st.binary(max_size=64))
    body = draw(st.binary(max_size=300) | json_values.map(
        lambda v: wire.encode_body({"op": "hello", "v": 1, "nonce": "00" * 16, "x": v})))
    if kind == "badmac":
        frame = wire.pack(draw(st.binary(min_size=32, max_size=32)), body)
    else:
        frame = wire.pack(wire.hello_mac(OTHER_SECRET, body), body)
    if kind == "truncated":  # a valid hello, cut short: waits for its deadline
        frame = wire.pack(wire.hello_mac(SECRET, body), body)
        return frame[:draw(st.integers(1, len(frame) - 1))]
    return frame + draw(st.binary(max_size=32))


@FUZZ
@given(data=hostile_frames(), half_close=st.sampled_from([True, True, True, False]))
def test_hostile_bytes_never_break_the_server(server: SyncServer, data: bytes,
                                              half_close: bool) -> None:
    # without EOF the server must judge by MAC, size or deadline on its own
    send_and_expect_drop(server, data, half_close)
    assert server._thread is not None and server._thread.is_alive()


@FUZZ
@given(messages=st.lists(st.dictionaries(st.sampled_from(
    ["op", "session", "host", "hosts", "tag", "timeout", "data", "reason"]),
    json_values | st.sampled_from(["join", "sync", "abort", "bye", "a", "b"])),
    min_size=1, max_size=4))
def test_authenticated_nonsense_gets_errors_not_crashes(server: SyncServer,
                                                        messages: List[Dict[str, Any]]) -> None:
    with RawClient(server.port, SECRET) as raw:
        raw.hello()
        try:
            for msg in messages:
                raw.send(msg)  # a body without a string "op" gets the peer dropped
            raw.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        assert closed_by_server(raw.sock, 3) is not None
    assert server._thread is not None and server._thread.is_alive()


@FUZZ
@given(prefix=st.integers(min_value=1, max_value=6), tamper=st.integers(0, 200))
def test_replayed_or_tampered_frames_are_rejected(server: SyncServer, prefix: int,
                                                  tamper: int) -> None:
    with RawClient(server.port, SECRET) as first:
        first.join("fuzz-replay", "a", ["a", "b"])
        first.send({"op": "sync", "tag": "t", "data": None, "timeout": 5})
        first.send({"op": "abort", "reason": "should never be replayed"})
        frames = list(first.sent)
        first.raw(frames[min(prefix, len(frames) - 1)])  # replay inside the connection
        assert closed_by_server(first.sock, 3) is not None
    with RawClient(server.port, SECRET) as second:
        second.raw(frames[0])  # a replayed hello gets a fresh nonce ...
        second.read_frame()
        frame = bytearray(frames[1 + prefix % (len(frames) - 1)])
        if tamper < len(frame):
            frame[tamper] ^= 0x01
        second.raw(bytes(frame))  # ... so every later frame fails its MAC
        assert closed_by_server(second.sock, 3) is not None


def test_server_still_serves_after_fuzzing(server: SyncServer) -> None:
    """Runs after the fuzz tests in this module (same server)."""
    correct_pair_completes(server, "after-fuzz")
    assert server.stats["rejected"] > 0 or server.stats["handshake_timeouts"] > 0
