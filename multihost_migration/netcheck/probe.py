"""The outside world's probe: measures a guest's network from the client.

Standard library only, no package import: the host sends this file's text
over SSH and the client machine runs it with its own `python3 -c` (nothing
is installed there).  Arguments (argv, all required):

    TARGET PORT INTERVAL_MS MAX_SECONDS TCP(0|1) LOAD(0|1) READY_TIMEOUT [FORGET(0|1)]

From the start it sends one UDP datagram (sequence number) to TARGET:PORT
every INTERVAL_MS and records when each echo comes back.  With TCP=1 it
first waits (at most READY_TIMEOUT s) for the first echo, then opens a TCP
connection to the echo service and checks one line goes round.  With
LOAD=1 a second TCP connection pumps data through the echo service.

Commands on stdin, one per line; answers on stdout, one JSON line each:

    mark            the migration completed now     -> {"marked": t}
    finish SECONDS  wait (at most SECONDS) for an echo after the mark,
                    check the TCP connection, stop  -> {"result": {...}}
    (end of input, or MAX_SECONDS passed: stop and report, as finish 0)

With FORGET=1 it first drops this machine's neighbour (ARP) entry for
TARGET (`ip neigh flush to TARGET`): the guests' addresses come back with
new MACs, and a stale entry naming an earlier guest's MAC first takes ~8 s
(delay, then unicast probes nobody answers) before a broadcast finds the
new one.  The first line out is {"ready": {...}}.  Times are seconds on this
machine's monotonic clock, relative to the probe's start.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Optional

LINGER = 0.3   # s of probing after the TCP check, so the tail is measured too


class Probe:
    def __init__(self, target: str, port: int, interval: float, max_seconds: float,
                 tcp: bool, load: bool, ready_timeout: float) -> None:
        self.target, self.port, self.interval = target, port, interval
        self.max_seconds, self.tcp_wanted, self.load = max_seconds, tcp, load
        self.ready_timeout = ready_timeout
        self.t0 = time.monotonic()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.connect((target, port))
        self.sent = 0
        self.replies: list[float] = []       # receive times of distinct replies
        self.seen: set[int] = set()
        self.mark: Optional[float] = None
        self.stop = threading.Event()        # everything
        self.stop_send = threading.Event()   # the sender, a moment before
        self.lock = threading.Lock()
        self.tcp: Optional[socket.socket] = None
        self.tcp_error = ""
        self.load_bytes = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- UDP ------------------------------------------------------------------
    def sender(self) -> None:
        next_at = time.monotonic()
        limit = int(self.max_seconds / self.interval) + 1
        while not self.stop_send.is_set() and self.sent < limit:
            try:
                self.udp.send(self.sent.to_bytes(8, "big"))
            except OSError:
                pass   # e.g. ECONNREFUSED from an earlier ICMP: keep sending
            self.sent += 1
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop_send.wait(delay)

    def receiver(self) -> None:
        self.udp.settimeout(0.05)
        while not self.stop.is_set():
            try:
                data = self.udp.recv(64)
            except socket.timeout:
                continue
            except OSError:
                time.sleep(0.01)
                continue
            seq = int.from_bytes(data[:8], "big")
            with self.lock:
                if seq not in self.seen:
                    self.seen.add(seq)
                    self.replies.append(self.now())

    # -- TCP ------------------------------------------------------------------
    def open_tcp(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not self.replies and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            sock = socket.create_connection((self.target, self.port), timeout=5.0)
            self.roundtrip(sock, b"mhm-tcp-open\n", 5.0)
            self.tcp = sock
        except OSError as err:
            self.tcp_error = f"connect: {err}"

    @staticmethod
    def roundtrip(sock: socket.socket, line: bytes, timeout: float) -> None:
        sock.settimeout(timeout)
        sock.sendall(line)
        got = b""
        while len(got) < len(line):
            chunk = sock.recv(len(line) - len(got))
            if not chunk:
                raise OSError("connection closed by the guest")
            got += chunk
        if got != line:
            raise OSError(f"echo {got!r} != sent {line!r}")

    def pump(self) -> None:
        try:
            sock = socket.create_connection((self.target, self.port), timeout=5.0)
        except OSError:
            return
        sock.setblocking(False)
        block = b"x" * 16384
        with sock:
            while not self.stop.is_set():
                _, w, _ = select.select([sock], [sock], [], 0.1)
                try:
                    if w:
                        sock.send(block)
                    while True:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return
                        self.load_bytes += len(chunk)
                except BlockingIOError:
                    continue
                except OSError:
                    return

    # -- results --------------------------------------------------------------
    def result(self, tcp_after: Optional[str]) -> dict[str, Any]:
        with self.lock:
            replies = list(self.replies)
        end = self.now()
        gap, gap_at = 0.0, 0.0
        # From the first echo when it came before the mark: the silence until
        # a guest first answers (a stale ARP entry at the client, a guest still
        # booting) is no migration's.  Else from the start; the end counts.
        answered = bool(replies) and (self.mark is None or replies[0] < self.mark)
        points = ([] if answered else [0.0]) + replies + [end]
        for a, b in zip(points, points[1:]):
            if b - a > gap:
                gap, gap_at = b - a, a
        after = [r for r in replies if self.mark is not None and r >= self.mark]
        return {
            "sent": self.sent, "received": len(replies),
            "lost": max(0, self.sent - len(replies)),
            "interval_ms": self.interval * 1000.0,
            "longest_gap_ms": round(gap * 1000.0, 1),
            "gap_start_s": round(gap_at, 3), "mark_s": self.mark,
            "first_reply_after_mark_ms": (round((after[0] - self.mark) * 1000.0, 1)
                                          if after and self.mark is not None else None),
            "replies_after_mark": len(after), "duration_s": round(end, 3),
            "tcp_opened": self.tcp is not None if self.tcp_wanted else None,
            "tcp_error": self.tcp_error,
            "tcp_alive_after": (tcp_after == "") if tcp_after is not None else None,
            "tcp_error_after": tcp_after or "",
            "load_bytes": self.load_bytes if self.load else None,
        }

    def finish(self, recover: float) -> dict[str, Any]:
        deadline = time.monotonic() + recover
        while time.monotonic() < deadline:
            with self.lock:
                if self.mark is not None and self.replies and self.replies[-1] >= self.mark:
                    break
            time.sleep(0.01)
        tcp_after: Optional[str] = None
        if self.tcp is not None:
            try:
                self.roundtrip(self.tcp, b"mhm-tcp-after-migration\n", 10.0)
                tcp_after = ""
            except OSError as err:
                tcp_after = str(err) or type(err).__name__
        time.sleep(LINGER)
        self.stop_send.set()
        time.sleep(0.05)   # the last echoes are on their way
        self.stop.set()
        return self.result(tcp_after)


def forget_neighbour(target: str) -> str:
    """Drop the neighbour entry for `target`; '' or what went wrong."""
    try:
        proc = subprocess.run(["ip", "neigh", "flush", "to", target], capture_output=True,
                              text=True, timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    return proc.stderr.strip() if proc.returncode else ""


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    target, port, interval_ms, max_s, tcp, load, ready_timeout, *more = argv
    forgot = forget_neighbour(target) if more[:1] == ["1"] else None
    probe = Probe(target, int(port), float(interval_ms) / 1000.0, float(max_s),
                  tcp == "1", load == "1", float(ready_timeout))
    for body in (probe.sender, probe.receiver):
        threading.Thread(target=body, daemon=True).start()
    if probe.tcp_wanted:
        probe.open_tcp()
    if probe.load:
        threading.Thread(target=probe.pump, daemon=True).start()
    emit({"ready": {"tcp_opened": probe.tcp is not None, "tcp_error": probe.tcp_error,
                    "replies": len(probe.replies), "t": probe.now(),
                    "neigh_flush": forgot}})
    deadline = probe.t0 + probe.max_seconds
    while True:
        left = deadline - time.monotonic()
        ready = select.select([sys.stdin], [], [], max(0.0, left))[0] if left > 0 else []
        if not ready:
            emit({"result": probe.finish(0.0), "timed_out": True})
            return 0
        line = sys.stdin.readline()
        words = line.split()
        if not words:
            emit({"result": probe.finish(0.0), "eof": True})
            return 0
        if words[0] == "mark":
            probe.mark = probe.now()
            emit({"marked": probe.mark})
        elif words[0] == "finish":
            emit({"result": probe.finish(float(words[1]) if len(words) > 1 else 0.0)})
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
