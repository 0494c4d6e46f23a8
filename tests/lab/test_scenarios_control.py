"""The migration-control scenarios on the lab: cancel, firewall_block,
downtime_and_speed, auto_converge; each passes with its verification in the
logs, and fails when what it checks is broken."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from multihost_migration.lab.inventory import Inventory
from multihost_migration.status import parse
from tests.lab.test_autotest_remote import TEST_HOSTS, guest_lab, run_autotest_remote  # noqa: F401
from tests.lab.test_scenarios import write_cfg

SRC, DST = TEST_HOSTS


def run_variant(inv: Inventory, tmp_path: Path, variant: str, *extra: str,
                timeout: float = 400) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run one control variant (`extra`: key=value lines); return the process
    and its test record from results.json."""
    cfg = write_cfg(tmp_path, "only tcp", f"only {variant}", *extra)
    proc = run_autotest_remote(inv, tmp_path / "r", options=("--cfg", str(cfg)),
                               timeout=timeout)
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert len(results["tests"]) == 1, results["tests"]
    return proc, results["tests"][0]


def host_log(test: dict[str, Any], host: str) -> str:
    return (Path(test["logdir"]) / host / "debug" / "client.INFO").read_text()


def statuses(test: dict[str, Any]) -> list[str]:
    return [m["stats"]["vm1"]["status"] for m in test["migrations"]]


def no_block_table_left(host: str) -> bool:
    out = subprocess.run(["ip", "netns", "exec", f"mhm-{host}", "nft", "list", "tables"],
                         capture_output=True, text=True, check=True).stdout
    return "mhm_block_" not in out


def test_cancel_mid_migration_then_migrate_again(guest_lab: Inventory,  # noqa: F811
                                                  tmp_path: Path) -> None:
    proc, test = run_variant(guest_lab, tmp_path, "cancel")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert test["status"] == "GOOD"
    assert [(m["src"], m["dst"]) for m in test["migrations"]] == [(SRC, DST), (SRC, DST)]
    assert statuses(test) == ["cancelled", "completed"]
    src, dst = host_log(test, SRC), host_log(test, DST)
    pct = float(re.search(r"migration cancelled at ([\d.]+) % of RAM", src).group(1))  # type: ignore[union-attr]
    assert 30 <= pct < 60, pct
    assert f"vm1 on {SRC} after mig1 to {DST}: source guest still running, memory intact" in src
    assert f"vm1 on {DST} (mig1 from {SRC}): incoming migration failed as expected" in dst
    assert "destination QEMU destroyed" in dst
    assert f"vm1 after mig2 on {DST}: memory OK" in dst
    assert f"vm1 after mig2 on {DST}: disk pattern OK" in dst


@pytest.mark.parametrize("kind", ["long", "short"])
def test_firewall_block(guest_lab: Inventory, tmp_path: Path, kind: str) -> None:  # noqa: F811
    proc, test = run_variant(guest_lab, tmp_path, f"firewall_block.{kind}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    src, dst = host_log(test, SRC), host_log(test, DST)
    assert "DROPping TCP port" in dst and "open again after" in dst
    assert re.search(r"the [\d.]+ s block hit the migration while active", dst)
    assert no_block_table_left(DST)
    if kind == "long":
        assert statuses(test) == ["cancelled"]
        assert "no progress for 5 s" in src and "outcome of the 10 s block" in src
        assert f"vm1 on {SRC} after mig1 to {DST}: source guest still running, " \
               "memory intact" in src
    else:
        assert statuses(test) == ["completed"]
        stall = int(re.search(r"the stream stood still (\d+) ms", src).group(1))  # type: ignore[union-attr]
        assert 1000 <= stall < 8000, stall
        assert f"vm1 after mig1 on {DST}: memory OK" in dst
        assert f"vm1 after mig1 on {DST}: disk pattern OK" in dst


def test_firewall_short_block_outlasting_the_watchdog_fails(guest_lab: Inventory,  # noqa: F811
                                                           tmp_path: Path) -> None:
    """Broken: the 'short' interrupt lasts 12 s, longer than the stall
    watchdog (8 s): the migration that must complete is cancelled -> FAIL."""
    proc, test = run_variant(guest_lab, tmp_path, "firewall_block.short",
                             "firewall_block_s = 12")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert test["status"] == "FAIL"
    reason = test["host_results"][SRC]["reason"]
    assert "stalled at" in reason and "no progress for 8 s" in reason and "cancelled" in reason
    assert "source guest still running and its memory is intact" in reason
    assert no_block_table_left(DST)


def test_downtime_and_speed_within_limits(guest_lab: Inventory,  # noqa: F811
                                          tmp_path: Path) -> None:
    proc, test = run_variant(guest_lab, tmp_path, "downtime_and_speed")
    assert proc.returncode == 0, proc.stdout[-3000:]
    stats = test["migrations"][0]["stats"]["vm1"]
    assert stats["status"] == "completed" and stats["downtime_limit_ms"] == 300
    assert stats["downtime_ms"] <= 800
    assert stats["guest_downtime_ms"] is not None and stats["guest_downtime_ms"] <= 1300
    for host in (SRC, DST):
        text = host_log(test, host)
        line = re.search(r"QEMU downtime \d+ ms \(allowed 800\), guest-observed downtime "
                         r"\d+ ms \(allowed 1300\), throughput sampled ([\d.]+) MiB/s / QEMU "
                         r"([\d.]+) MiB/s \(allowed 36.8 MiB/s; downtime-limit 300 ms, "
                         r"max-bandwidth 32.0 MiB/s\)", text)
        assert line, text[-3000:]
        # the limit was the bottleneck: the throughput came near it
        assert 20 <= float(line.group(1)) <= 36.8
        assert "downtime and throughput within their limits" in text


def test_downtime_impossible_margin_fails(guest_lab: Inventory,  # noqa: F811
                                          tmp_path: Path) -> None:
    """Broken: a margin of -300 ms allows 0 ms of downtime -> FAIL naming the
    measured and the allowed value."""
    proc, test = run_variant(guest_lab, tmp_path, "downtime_and_speed",
                             "downtime_margin_ms = -300")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert test["status"] == "FAIL"
    for host in (SRC, DST):
        reason = test["host_results"][host]["reason"]
        assert re.search(r"vm1 mig1 \S+ -> \S+: QEMU-reported downtime \d+ ms > allowed 0 ms "
                         r"\(downtime-limit 300 ms \+ margin -300 ms\)", reason), reason
        assert "guest-observed" not in reason and "throughput" not in reason


def test_auto_converge(guest_lab: Inventory, tmp_path: Path) -> None:  # noqa: F811
    proc, test = run_variant(guest_lab, tmp_path, "auto_converge")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert statuses(test) == ["cancelled", "completed"]
    src, dst = host_log(test, SRC), host_log(test, DST)
    assert "cancelling after 8 s still active with >= 3 dirty-sync passes" in src
    assert f"vm1 on {SRC} after mig1 to {DST}: source guest still running, memory intact" in src
    assert re.search(r"auto-converge throttle climbed as configured \(initial 60, increment "
                     r"20, max 99\): 60 % at [\d.]+ s, 80 % at [\d.]+ s", src)
    assert "the throttled vCPU really sleeps" in src
    samples = test["migrations"][1]["stats"]["vm1"]["samples"]
    seen = [s["throttle"] for s in samples if s["throttle"]]
    assert seen[0] == 60 and 80 in seen and seen == sorted(seen)
    assert f"vm1 after mig2 on {DST}: disk pattern OK" in dst
    # memory: verified (GOOD), or (TCG) the known QEMU defect: WARN with it as the reason
    if f"vm1 after mig2 on {DST}: memory OK" in dst:
        assert test["status"] == "GOOD", test["reason"]
    else:
        assert test["status"] == "WARN", test["reason"]
        assert "KNOWN QEMU 7.2 TCG DEFECT" in test["host_results"][DST]["reason"]
        assert "KNOWN QEMU 7.2 TCG DEFECT" in dst


@pytest.mark.slow
def test_auto_converge_capped_throttle_fails(guest_lab: Inventory,  # noqa: F811
                                             tmp_path: Path) -> None:
    """Broken: the throttle may not pass 50 % (30, 40, 50): the guest still
    dirties faster than 64 MiB/s, the auto-converge migration never converges
    within mig_timeout -> FAIL."""
    proc, test = run_variant(guest_lab, tmp_path, "auto_converge", "ac_throttle_initial = 30",
                             "ac_throttle_increment = 10", "ac_throttle_max = 50",
                             "mig_timeout = 25")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert test["status"] == "FAIL"
    reason = test["host_results"][SRC]["reason"]
    assert "not finished after 25s; cancelled" in reason, reason
    assert "source guest still running and its memory is intact" in reason
    entries = parse((tmp_path / "r" / "status.log").read_text())
    assert entries[-1].status == "END FAIL"
