"""The legacy API layer (multihost_migration/legacy), without QEMU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from multihost_migration.cartesian import Parser
from multihost_migration.legacy import needs, switch
from multihost_migration.legacy.error import context, context_aware
from multihost_migration.legacy.hostutils import (InterruptedThread, Statistic,
                                                  convert_data_size, missing_program, run)
from multihost_migration.legacy.migration import cancel_bandwidth
from multihost_migration.legacy.session import LegacySession
from multihost_migration.legacy.unsupported import LegacyUnsupported, unsupported
from multihost_migration.legacy.vm import LegacyVM
from multihost_migration.params import Params
from multihost_migration.plan import MigrationPlan
from multihost_migration.qemu.transport import Transport
from multihost_migration.verdicts import TestNAError, status_of

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_virttest_outside_a_legacy_job_is_the_real_one() -> None:
    out = run_python("import multihost_migration.client.job, multihost_migration.legacy.switch\n"
                     "import virttest; print(virttest.__file__)")
    assert "site-packages" in out and "_shim" not in out


def checkout(tmp_path: Path) -> Path:
    tests = tmp_path / "tpq" / "multi_host_migration" / "tests"
    tests.mkdir(parents=True)
    (tmp_path / "tpq" / "provider").mkdir()
    (tmp_path / "tpq" / "provider" / "__init__.py").write_text("")
    (tmp_path / "tpq" / "provider" / "helper.py").write_text("VALUE = 7\n")
    (tests / "legacy_t.py").write_text(
        "from autotest.client.shared import error\n"
        "from virttest.utils_test.qemu import migration\n"
        "from provider import helper\n"
        "def run(test, params, env):\n"
        "    assert helper.VALUE == 7\n"
        "    import virttest.utils_conn\n")
    (tests / "plain_t.py").write_text("def run(test, params, env):\n    pass\n")
    return tmp_path / "tpq"


def test_a_legacy_module_in_a_checkout_is_found_and_switches_the_layer_on(
        tmp_path: Path) -> None:
    root = checkout(tmp_path)
    params = Params({"scenario_dirs": str(root), "type": "legacy_t", "vms": "vm1"})
    path = switch.find_legacy(params)
    assert path == root / "multi_host_migration" / "tests" / "legacy_t.py"
    assert switch.find_legacy(Params(params, type="plain_t")) is None
    assert switch.find_legacy(Params(params, legacy_api="no")) is None
    assert switch.find_legacy(Params(params, type="plain_t", legacy_api="yes")) is not None


def test_an_unserved_legacy_module_names_itself_and_the_importing_line(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    code = (
        "from pathlib import Path\n"
        "from multihost_migration.params import Params\n"
        "from multihost_migration.qemu.env import Env\n"
        "from multihost_migration.legacy import switch\n"
        "from multihost_migration.legacy.unsupported import LegacyUnsupported\n"
        "class T:\n    outputdir = '/tmp'\n"
        f"p = Params(scenario_dirs='{root}', type='legacy_t', vms='vm1', hostid='h1')\n"
        "try:\n    switch.run(switch.find_legacy(p), T(), p, Env())\n"
        "except LegacyUnsupported as err:\n    print('ERR', err)\n"
        "import virttest; print(virttest.__file__)\n")
    out = run_python(code)
    assert "ERR module virttest.utils_conn is not served by the legacy layer" in out
    assert "legacy_t.py:6" in out
    assert "_shim/virttest/__init__.py" in out


def test_unsupported_names_the_call_and_the_callers_line() -> None:
    def legacy_code() -> LegacyUnsupported:
        return unsupported("vm.frobnicate")
    err = legacy_code()
    assert "vm.frobnicate is not served by the legacy layer" in str(err)
    assert f"{__file__}:" in err.where
    assert status_of(err) == "ERROR" and isinstance(err, AttributeError)


def test_tp_qemu_style_cfg_with_top_level_entries_is_included_as_variants(
        tmp_path: Path) -> None:
    (tmp_path / "legacy.cfg").write_text(
        "- @multi_host:\n    no JeOS\n    variants multi_host_tests:\n"
        "        - migrate_multi_host: install setup\n            type = mmh\n"
        "        - cancel_with_delay:\n            type = cancel\n            cancel_delay = 10\n")
    (tmp_path / "user.cfg").write_text(
        "variants guest:\n    - JeOS:\n    - @Linux:\n        variants:\n            - mhm:\n"
        "include legacy.cfg\nonly cancel_with_delay\nstress_cmd = true\n")
    parser = Parser()
    parser.parse_file(str(tmp_path / "user.cfg"))
    tests = list(parser.get_dicts())
    assert [t["shortname"] for t in tests] == ["cancel_with_delay.mhm"]
    assert tests[0]["cancel_delay"] == "10" and tests[0]["stress_cmd"] == "true"


def test_the_plan_reads_legacy_names_at_each_migration() -> None:
    params = Params(vms="vm1", images="", mig_protocol="exec", mig_offline="yes",
                    cancel_delay="10", not_wait_for_migration="yes")
    plan = MigrationPlan.from_params(params, mig_id="m1", src="h1", dst="h2", vms=["vm1"])
    assert plan.transport is Transport.EXEC and plan.offline
    assert plan.cancel_delay == 10.0 and not plan.wait
    params["cancel_delay"] = None      # a legacy test, between two migrations
    params["migration_protocol"] = "tcp"
    plan = MigrationPlan.from_params(params, mig_id="m2", src="h1", dst="h2", vms=["vm1"])
    assert plan.cancel_delay is None and plan.transport is Transport.TCP


def test_guest_lacks_makes_kdump_and_autotest_tests_test_na() -> None:
    lacks = "kdump autotest"
    kdump = needs.missing(Params(type="migration_multi_host_with_kdump", guest_lacks=lacks))
    assert kdump is not None and "kdump inside the guest" in kdump
    stress = needs.missing(Params(type="x", bg_stress_test="autotest_control",
                                  guest_lacks=lacks))
    assert stress is not None and "autotest inside the guest" in stress
    assert needs.missing(Params(type="migration_multi_host_with_kdump")) is None


def test_host_helpers() -> None:
    assert convert_data_size("10M") == 10 << 20
    assert convert_data_size("1G", "M") == 1 << 30 and convert_data_size("5", "M") == 5 << 20
    assert convert_data_size("100M", "M") == 100 << 20
    stat = Statistic()
    for value in (3, 1, 2):
        stat.record(value)
    assert (stat.get_min(), stat.get_max(), stat.get_average()) == (1, 3, 2)
    assert missing_program("stress --cpu 4", 127, "sh: stress: not found") == "stress"
    assert missing_program("true", 1, "") is None
    assert run("echo hi").stdout == "hi\n"
    with pytest.raises(TestNAError, match="host lacks 'no-such-program-xyz'"):
        run("no-such-program-xyz")


def test_interrupted_thread_reraises_on_join() -> None:
    def boom() -> None:
        raise ValueError("in thread")
    thread = InterruptedThread(boom)
    thread.start()
    with pytest.raises(ValueError, match="in thread"):
        thread.join()


def test_context_aware_keeps_the_message_and_notes_the_context() -> None:
    @context_aware
    def step() -> None:
        context("loading the guest")
        raise TestNAError("no stress")
    with pytest.raises(TestNAError, match="^no stress$") as info:
        step()
    assert getattr(info.value, "legacy_context") == "loading the guest"


def test_an_unsupported_call_names_the_call_and_the_legacy_modules_file_and_line(
        tmp_path: Path) -> None:
    module = tmp_path / "legacy_calls.py"
    module.write_text("def on_vm(vm):\n"
                      "    vm.monitor.info('status')\n"
                      "    return vm.screendump('/tmp/x.ppm')\n"
                      "def on_session(session):\n"
                      "    return session.cmd_output_with_retries('true')\n")
    spec = importlib.util.spec_from_file_location("legacy_calls", module)
    assert spec is not None and spec.loader is not None
    legacy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(legacy)

    class Monitor:     # vm.monitor.info works without QEMU here
        def info(self, what: str) -> dict[str, str]:
            return {"status": "running"}
    vm = LegacyVM("vm1", {"vms": "vm1"}, tmp_path / "vm1")
    vm._monitor = Monitor()  # type: ignore[assignment]
    with pytest.raises(LegacyUnsupported) as info:
        legacy.on_vm(vm)
    assert str(info.value) == (f"vm.screendump is not served by the legacy layer "
                               f"(called at {module}:3)")
    assert status_of(info.value) == "ERROR"
    with pytest.raises(LegacyUnsupported, match=rf"^session\.cmd_output_with_retries .* "
                                                rf"\(called at {module}:5\)$"):
        legacy.on_session(LegacySession(object(), "vm1"))  # type: ignore[arg-type]


def test_copy_and_address_without_a_guest_network_are_test_na(tmp_path: Path) -> None:
    vm = LegacyVM("vm1", {"vms": "vm1", "guest_network": "no"}, tmp_path / "vm1")
    with pytest.raises(TestNAError, match="vm1: vm.copy_files_to copies over the guest's "
                                          "network: guest has no network"):
        vm.copy_files_to(str(tmp_path), "/tmp")
    with pytest.raises(TestNAError, match="vm1: guest has no network"):
        vm.get_address()
    assert LegacyVM("vm1", {"vms": "vm1", "guest_ip": "10.0.0.5"}, tmp_path).get_address() \
        == "10.0.0.5"
    with_nic = LegacyVM("vm1", {"vms": "vm1", "guest_network": "yes",
                                "nic_ip": "198.19.0.150"}, tmp_path / "vm1")
    assert with_nic.get_address() == "198.19.0.150"


def test_cancel_delay_caps_the_bandwidth_unless_the_cfg_sets_one() -> None:
    capped = cancel_bandwidth(Params(cancel_delay="10", mem="256"))
    assert capped == {"migrate_parameter_max-bandwidth": str(256 * 1024 * 1024 // 80)}
    assert cancel_bandwidth(Params(cancel_delay=None, mem="256")) == {}
    assert cancel_bandwidth(Params(mem="256")) == {}
    assert cancel_bandwidth(Params({"cancel_delay": "10",
                                    "migrate_parameter_max-bandwidth": "4M"})) == {}
