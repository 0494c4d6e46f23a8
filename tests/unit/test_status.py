"""status.log: autotest's format, nesting, worst-status END, thread safety."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from multihost_migration.status import StatusLog, format_line, parse, worst


def test_line_format_is_tab_separated_with_timestamp_and_localtime() -> None:
    line = format_line(2, "GOOD", "t.x", "t.x", "completed\tfine\nreally", when=1764107000)
    cols = line.rstrip("\n").split("\t")
    assert cols[:5] == ["", "", "GOOD", "t.x", "t.x"]
    assert cols[5] == "timestamp=1764107000"
    assert cols[6].startswith("localtime=")
    assert cols[7] == "completed fine really"


def test_worst_orders_statuses() -> None:
    assert worst("GOOD", "WARN") == "WARN"
    assert worst("GOOD", "FAIL", "ERROR") == "ERROR"
    assert worst("ABORT", "FAIL") == "ABORT"
    assert worst() == "GOOD"


def test_groups_nest_and_end_with_the_worst_status(tmp_path: Path) -> None:
    log = StatusLog(tmp_path / "status.log")
    with log.group(None, None):
        with log.group("a", "a"):
            log.record("GOOD", "a", "a", "ok")
        with log.group("b", "b"):
            log.record("FAIL", "b", "b", "broken")
    entries = parse((tmp_path / "status.log").read_text())
    assert [(e.indent, e.status) for e in entries] == [
        (0, "START"), (1, "START"), (2, "GOOD"), (1, "END GOOD"),
        (1, "START"), (2, "FAIL"), (1, "END FAIL"), (0, "END FAIL")]
    assert entries[5].reason == "broken"
    assert entries[5].fields["timestamp"].isdigit()


def test_an_exception_in_a_group_ends_it_with_error(tmp_path: Path) -> None:
    log = StatusLog(tmp_path / "status.log")
    with pytest.raises(RuntimeError):
        with log.group("t", "t"):
            raise RuntimeError("boom")
    last = parse((tmp_path / "status.log").read_text())[-1]
    assert last.status == "END ERROR" and "boom" in last.reason


def test_buffered_groups_in_threads_never_interleave_and_reach_the_parent(tmp_path: Path) -> None:
    log = StatusLog(tmp_path / "status.log")
    with log.group(None, None):
        context = log.context()

        def pair(i: int) -> None:
            log.adopt(context)
            with log.group(f"p{i}", f"p{i}", buffered=True):
                for _ in range(20):
                    log.record("GOOD" if i else "FAIL", f"p{i}", "step")

        threads = [threading.Thread(target=pair, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    entries = parse((tmp_path / "status.log").read_text())
    assert entries[-1].status == "END FAIL"   # thread 0's FAIL reached the top group
    # each thread's block is contiguous
    order = [e.subdir for e in entries[1:-1]]
    blocks = [order[i:i + 22] for i in range(0, len(order), 22)]
    assert all(len(set(b)) == 1 for b in blocks)


def test_record_raw_embeds_a_client_log_one_level_deeper(tmp_path: Path) -> None:
    client = tmp_path / "client.log"
    clog = StatusLog(client)
    with clog.group("t/h1", "t"):
        clog.record("FAIL", "t/h1", "t", "guest died")
    log = StatusLog(tmp_path / "status.log")
    with log.group("t", "t"):
        log.record_raw(client.read_text().splitlines(), 0)
    entries = parse((tmp_path / "status.log").read_text())
    assert [(e.indent, e.status) for e in entries] == [
        (0, "START"), (1, "START"), (2, "FAIL"), (1, "END FAIL"), (0, "END FAIL")]


def test_a_log_cut_short_is_closed_with_the_verdict_given_for_it(tmp_path: Path) -> None:
    """A client job killed mid-test leaves its status.log at START: the
    controller's copy gets that host's verdict line and the END lines."""
    from multihost_migration.remote import CommandResult
    from multihost_migration.server.dispatch import HostOutcome, _judge
    from multihost_migration.status import close_open_groups

    (tmp_path / "status.log").write_text(format_line(0, "START", "t/h2", "t"))
    outcome = HostOutcome("h2")
    _judge("h2", tmp_path, [], CommandResult("job", -1, "last words", "", 1.0), outcome)
    assert outcome.status == "FAIL" and outcome.status_lines is not None
    entries = parse("\n".join(outcome.status_lines))
    assert [(e.indent, e.status) for e in entries] == [(0, "START"), (1, "FAIL"), (0, "END FAIL")]
    assert entries[1].reason.startswith("client job on h2 was killed") and entries[1].subdir == "t/h2"
    # a complete log is left as it is
    done = [format_line(0, "START", "t", "t"), format_line(1, "GOOD", "t", "t"),
            format_line(0, "END GOOD", "t", "t")]
    assert close_open_groups(done, "FAIL", "x") == done
