"""The data-path scenarios' checkers, on good and on bad input (no lab).

Each checker must FAIL (TestFail) when what it verifies did not happen:
xbzrle counters zero, multifd bytes zero or channels missing, no postcopy
phase, TLS credentials not selected, a disk block that does not read back.
The disk writer and its read-back run for real under busybox sh (the same
busybox as the guest's) on a file standing in for the disk.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from multihost_migration.errors import GuestCheckError
from multihost_migration.scenarios._datapath import ram_counter
from multihost_migration.scenarios.migration_multifd import (ConnectionCounter, check_multifd,
                                                             established_to_port,
                                                             socket_inodes)
from multihost_migration.scenarios.migration_postcopy import check_postcopy, statuses_seen
from multihost_migration.scenarios.migration_tls import check_tls_creds
from multihost_migration.scenarios.migration_with_disk_io import (
    BLOCK, DiskCheck, block_line, describe_bad, last_write, parse_verify, verify_command,
    writer_command)
from multihost_migration.scenarios.migration_xbzrle import check_xbzrle, xbzrle_pages
from multihost_migration.verdicts import TestFail

CTX = "vm1 in mig1 h1->h2 (on h1)"


# -- xbzrle ----------------------------------------------------------------------

XBZRLE_USED = {"status": "completed", "xbzrle-cache": {
    "cache-size": 33554432, "bytes": 68577, "pages": 11013, "cache-miss": 5679,
    "cache-miss-rate": 0.06, "encoding-rate": 649.9, "overflow": 0}}


def test_xbzrle_used_gives_its_counters() -> None:
    evidence = check_xbzrle(XBZRLE_USED, CTX)
    assert evidence["xbzrle_cache"]["pages"] == 11013
    assert xbzrle_pages(XBZRLE_USED) == 11013


def test_xbzrle_capability_off_fails_naming_the_zero_counters() -> None:
    reply = {"status": "completed", "ram": {"transferred": 1}}   # no xbzrle-cache at all
    with pytest.raises(TestFail) as fail:
        check_xbzrle(reply, CTX)
    text = str(fail.value)
    assert text.startswith(CTX) and "XBZRLE was not used" in text
    assert "pages and bytes zero" in text and "pages=0 bytes=0" in text
    assert "capability xbzrle off" in text
    assert xbzrle_pages(reply) == 0


def test_xbzrle_cache_never_hit_fails() -> None:
    reply = {"xbzrle-cache": {"pages": 0, "bytes": 0, "cache-miss": 3031, "overflow": 0}}
    with pytest.raises(TestFail, match=r"pages and bytes zero \(pages=0 bytes=0 "
                                       r"cache-miss=3031 overflow=0\)$"):
        check_xbzrle(reply, CTX)


# -- multifd ---------------------------------------------------------------------

def test_multifd_carried_the_data() -> None:
    reply = {"ram": {"multifd-bytes": 92054592}}
    assert check_multifd(reply, 3, 4, 3, CTX) == {
        "multifd_bytes": 92054592, "connections": 4, "multifd_channels": 3}
    assert ram_counter(reply, "multifd-bytes") == 92054592
    assert ram_counter({"ram": {"multifd-bytes": True}}, "multifd-bytes") is None


@pytest.mark.parametrize("reply, connections, read_back, expected", [
    ({"ram": {"multifd-bytes": 0}}, 4, 3, "ram.multifd-bytes=0"),
    ({"ram": {}}, 4, 3, "ram.multifd-bytes=0"),
    ({"ram": {"multifd-bytes": 5}}, 1, 3,
     "1 TCP connection(s) to the destination at most, expected 4 (main + 3 multifd"),
    ({"ram": {"multifd-bytes": 5}}, 4, 2, "multifd-channels reads back 2, configured 3"),
])
def test_multifd_not_used_fails(reply: dict[str, Any], connections: int, read_back: int,
                                expected: str) -> None:
    with pytest.raises(TestFail) as fail:
        check_multifd(reply, 3, connections, read_back, CTX)
    assert str(fail.value).startswith(f"{CTX}: multifd did not carry the migration")
    assert expected in str(fail.value)


TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1
   1: 120012C6:A1B2 120012C6:8695 01 00000000:00000000 00:00000000 00000000     0        0 222 1
   2: 120012C6:A1B3 120012C6:8695 01 00000000:00000000 00:00000000 00000000     0        0 333 1
   3: 120012C6:A1B4 120012C6:8695 06 00000000:00000000 00:00000000 00000000     0        0 444 1
   4: 120012C6:A1B5 120012C6:8696 01 00000000:00000000 00:00000000 00000000     0        0 555 1
"""


def test_established_connections_are_counted_by_port_state_and_owner() -> None:
    port = 0x8695
    # 222 and 333 established to the port; 444 is TIME_WAIT, 555 another port
    assert established_to_port([TCP_TABLE], port, {"222", "333", "444", "555"}) == 2
    assert established_to_port([TCP_TABLE], port, {"222"}) == 1       # not our socket
    assert established_to_port([TCP_TABLE, "header\nbad line\n"], port, {"333"}) == 1


def test_connection_counter_sees_the_connections_of_a_process() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            assert len(socket_inodes(os.getpid())) >= 4
            with ConnectionCounter(os.getpid(), port) as counter:
                deadline = time.monotonic() + 5
                while counter.most < 3 and time.monotonic() < deadline:
                    time.sleep(0.02)
            assert counter.most == 3 and counter.samples >= 1
        finally:
            for client in clients:
                client.close()
    assert socket_inodes(2 ** 22 + 12345) == set()   # no such process


def test_counting_connections_records_the_most_even_when_the_block_fails() -> None:
    from types import SimpleNamespace

    from multihost_migration.scenarios._connections import counting_connections
    vm = SimpleNamespace(name="vm1", pid=os.getpid())
    most: dict[str, int] = {}
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        try:
            with pytest.raises(RuntimeError, match="the migration failed"):
                with counting_connections([vm], {"vm1": port}, most):  # type: ignore[list-item]
                    time.sleep(0.5)          # the poller samples every 50 ms
                    raise RuntimeError("the migration failed")
        finally:
            for client in clients:
                client.close()
    assert most == {"vm1": 2}


# -- postcopy --------------------------------------------------------------------

def test_postcopy_bytes_prove_the_switch() -> None:
    reply = {"ram": {"postcopy-bytes": 17158839, "postcopy-requests": 3}}
    evidence = check_postcopy(reply, ["active", "completed"], True, CTX)
    assert evidence["postcopy_bytes"] == 17158839 and evidence["postcopy_requests"] == 3


def test_precopy_only_fails_never_switched() -> None:
    samples = [{"status": s} for s in ("setup", "active", "active", "completed")]
    statuses = statuses_seen(samples)
    assert statuses == ["setup", "active", "completed"]
    reply = {"ram": {"postcopy-bytes": 0, "postcopy-requests": 0}}
    with pytest.raises(TestFail) as fail:
        check_postcopy(reply, statuses, False, CTX)
    assert str(fail.value) == (
        f"{CTX}: never switched to postcopy: postcopy-bytes=0, postcopy-requests=0, "
        f"statuses seen setup -> active -> completed (capability postcopy-ram off on "
        f"the source)")


def test_postcopy_without_the_byte_counter_uses_the_statuses() -> None:
    assert check_postcopy({"ram": {}}, ["active", "postcopy-active", "completed"], True,
                          CTX)["postcopy_bytes"] is None
    with pytest.raises(TestFail, match="never switched to postcopy"):
        check_postcopy({"ram": {}}, ["active", "completed"], True, CTX)


# -- tls -------------------------------------------------------------------------

def test_tls_creds_read_back() -> None:
    assert check_tls_creds("mhm-tls-client", "mhm-tls-client", CTX) == {
        "tls_creds": "mhm-tls-client"}
    with pytest.raises(TestFail, match="TLS was not in force: tls-creds reads back ''"):
        check_tls_creds("", "mhm-tls-server", CTX)


# -- disk I/O --------------------------------------------------------------------

def test_block_text_and_last_writes() -> None:
    line = block_line(1234, 7, 4103)
    assert len(line) == 64 and line.startswith("MHM-DISKIO:seed=1234:block=7:write=4103 ")
    assert last_write(7, 8, 4096) == 7            # written once
    assert last_write(8, 8, 4096) is None         # not yet written
    assert last_write(3, 25, 10) == 23            # third time round: 3, 13, 23
    assert last_write(7, 25, 10) == 17


def test_verify_output_parsing() -> None:
    assert parse_verify(0, "DISKIO CHECKED blocks=181 bad=0\n") == DiskCheck(181, 0, ())
    check = parse_verify(0, "DISKIO BAD block=7\nDISKIO BAD block=9\n"
                            "DISKIO CHECKED blocks=181 bad=2\n")
    assert check == DiskCheck(181, 2, (7, 9))
    text = describe_bad(check, 1234, 0, 4096, 181, "0000000 ` 036 355\n")
    assert "2 of 181 blocks" in text and "block 7, 9" in text
    assert "block 7 (disk offset 28672) should hold write #7" in text
    assert "'MHM-DISKIO:seed=1234:block=7:write=7'" in text
    assert "starts with: '0000000 ` 036 355'" in text
    with pytest.raises(GuestCheckError, match="did not complete"):
        parse_verify(1, "dd: /dev/vda: No such device\n")


@pytest.fixture
def busybox_path(tmp_path: Path) -> Iterator[str]:
    """A PATH of busybox applets only, as in the guest."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    assert Path(busybox).exists(), "busybox missing: scripts/setup.sh installs busybox-static"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for applet in ("sh", "dd", "awk", "cmp", "wc", "cat", "rm", "head", "touch", "sleep"):
        (bindir / applet).symlink_to(busybox)
    yield str(bindir)


def _sh(path: str, command: str, timeout: float = 60) -> tuple[int, str]:
    proc = subprocess.run(["sh", "-c", command], env={"PATH": path}, capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _write(path: str, disk: Path, state: str, blocks: int, at_least: int) -> int:
    """Run the writer until it wrote `at_least` blocks, stop it; the count."""
    start = writer_command(str(disk), 99, 2, blocks, state)
    stop = (f"until [ \"$(cat {state}.count 2>/dev/null)\" -ge {at_least} ] 2>/dev/null; "
            f"do sleep 0.05; done; touch {state}.stop; wait $(cat {state}.pid)")
    status, output = _sh(path, f"{start}; {stop}")
    assert status == 0, output
    assert not Path(f"{state}.err").exists()
    return int(Path(f"{state}.count").read_text())


def test_writer_and_read_back_in_busybox(busybox_path: str, tmp_path: Path) -> None:
    disk, state = tmp_path / "disk", str(tmp_path / "io")
    disk.write_bytes(b"\0" * (64 * BLOCK))
    writes = _write(busybox_path, disk, state, 16, 40)   # wraps round 16 blocks
    assert writes >= 40
    data = disk.read_bytes()
    for block in range(16):   # region starts at block 2
        got = data[(2 + block) * BLOCK:(3 + block) * BLOCK]
        want = block_line(99, block, last_write(block, writes, 16) or 0) * (BLOCK // 64)
        assert got == want.encode(), f"block {block}"
    assert data[:2 * BLOCK] == b"\0" * 2 * BLOCK      # outside the region: untouched
    status, output = _sh(busybox_path, verify_command(str(disk), 99, 2, 16, writes, state))
    assert parse_verify(status, output) == DiskCheck(16, 0, ())


def test_read_back_names_the_corrupted_block(busybox_path: str, tmp_path: Path) -> None:
    disk, state = tmp_path / "disk", str(tmp_path / "io")
    disk.write_bytes(b"\0" * (64 * BLOCK))
    writes = _write(busybox_path, disk, state, 4096, 12)
    with disk.open("r+b") as handle:           # block 5 of the region, one byte off
        handle.seek((2 + 5) * BLOCK + 100)
        handle.write(b"X")
    status, output = _sh(busybox_path, verify_command(str(disk), 99, 2, 4096, writes, state))
    check = parse_verify(status, output)
    assert check.bad == 1 and check.bad_blocks == (5,) and check.checked == writes
    # a read-back that comes up short is not a pass
    status, output = _sh(busybox_path, verify_command(str(disk), 99, 62, 4096, writes, state))
    with pytest.raises(GuestCheckError):
        parse_verify(status, output)


# -- cfg: the variants, and the controller's params check ------------------------

SUBTESTS = Path(__file__).resolve().parents[2] / "cfg" / "subtests.cfg"


def test_datapath_variants_select_one_test_each_on_tcp() -> None:
    from multihost_migration.server.dispatch import select_tests
    for variant, module in (("with_disk_io", "migration_with_disk_io"),
                            ("postcopy", "migration_postcopy"),
                            ("xbzrle", "migration_xbzrle"),
                            ("multifd", "migration_multifd"), ("tls", "migration_tls")):
        # `only postcopy` alone would also pick the postcopy transport of
        # every other scenario: the scenario variant is named before `.tcp`
        [test] = select_tests(SUBTESTS, [f"only {variant}.tcp"])
        assert test["type"] == module and test["migration_protocol"] == "tcp"
        assert (Path(__file__).resolve().parents[2] / "multihost_migration" / "scenarios"
                / f"{module}.py").is_file()


def test_preflight_accepts_tls_without_a_credentials_dir(tmp_path: Path) -> None:
    """MultihostMigration makes the job's credentials: the controller's
    params check must not require migration_tls_dir (it did)."""
    from multihost_migration.server.dispatch import select_tests
    from multihost_migration.server.preflight import Preflight
    cfg = tmp_path / "tests.cfg"
    cfg.write_text("".join(f"include {SUBTESTS.parent / name}\n"
                           for name in ("base.cfg", "guests.cfg", "subtests.cfg")))
    [test] = select_tests(cfg, ["only tls.tcp", "only JeOS.mhm"])
    assert test["migration_tls"] == "x509" and not test.get("migration_tls_dir")
    assert test["vms"] == "vm1"
    checks = Preflight({}, test, "python3", {})
    checks._params()
    assert [(c.name, c.ok) for c in checks.checks] == [("params", True)], checks.checks
    broken = dict(test, migration_tls="x509-typo")
    checks = Preflight({}, broken, "python3", {})
    checks._params()
    assert [(c.name, c.ok) for c in checks.checks] == [("params", False)]
    assert "x509-typo" in checks.checks[0].detail


# -- the downtime-limit hold and release -------------------------------------------

class FakeMigratingVM:
    """query-migrate replies in turn (the last one repeats); records
    migrate-set-parameters."""

    name = "vm1"

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.set: list[dict[str, Any]] = []

    def query_migrate(self) -> dict[str, Any]:
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    def set_migration_parameters(self, parameters: dict[str, Any]) -> None:
        self.set.append(dict(parameters))


def _release(replies: list[dict[str, Any]], seen: bool,
             wait: float = 5.0) -> tuple[FakeMigratingVM, Any]:
    from typing import cast

    from multihost_migration.qemu.vm import VM
    from multihost_migration.scenarios._datapath import DowntimeRelease
    vm = FakeMigratingVM(replies)
    with DowntimeRelease(cast(VM, vm), 4, 1000, lambda reply: seen and
                         (reply.get("ram") or {}).get("dirty-sync-count", 0) >= 3,
                         interval=0.01) as release:
        deadline = time.monotonic() + wait
        while release.released_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
    return vm, release


def test_downtime_release_when_the_feature_shows_or_after_the_passes() -> None:
    def active(passes: int) -> dict[str, Any]:
        return {"status": "active", "ram": {"dirty-sync-count": passes}}
    vm, release = _release([{}, active(1), active(2), active(3)], seen=True)
    assert vm.set == [{"downtime-limit": 1000}]          # once
    assert release.released_at == "feature seen after 3 passes"
    vm, release = _release([active(1), active(3), active(4), active(5)], seen=False)
    assert vm.set == [{"downtime-limit": 1000}]
    assert release.released_at == "4 passes, feature not seen"
    # not while setting up, nor once over (a previous migration's counters)
    vm, release = _release([{"status": "completed", "ram": {"dirty-sync-count": 9}}],
                           seen=False, wait=0.3)
    assert vm.set == [] and release.released_at is None


def test_preflight_clock_skew_allows_for_the_round_trip() -> None:
    """A slow connection (a loaded machine) is no clock skew; a real skew is."""
    from multihost_migration.server.preflight import Preflight

    class SlowHost(Preflight):
        offset = 0.0

        def _run(self, host: str, command: str, timeout: float = 30.0) -> tuple[int, str]:
            read = time.time() + self.offset    # the host reads its clock at once...
            time.sleep(0.6)                      # ...and the answer takes its time
            return 0, f"{read:.6f}"

    slow = SlowHost({}, {"max_clock_skew": "0.1"}, "python3", {})
    slow._clock("h1")
    assert slow.checks[0].ok, slow.checks[0]
    skewed = SlowHost({}, {"max_clock_skew": "0.1"}, "python3", {})
    skewed.offset = 5.0
    skewed._clock("h1")
    assert not skewed.checks[0].ok and "sync the clocks" in skewed.checks[0].detail
