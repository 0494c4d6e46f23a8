"""The shipped cfg files select what they say, as the reference parser does."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihost_migration.cartesian import Parser
from multihost_migration.errors import ConfigError
from multihost_migration.params import Params
from multihost_migration.imagespec import image_specs
from multihost_migration.server.dispatch import select_tests

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / "cfg" / "multi-host-tests.cfg"


def names(text: str) -> list[str]:
    parser = Parser()
    parser.parse_string(text)
    return [d["name"] for d in parser.get_dicts()]


def test_default_selection_is_the_guide_scenario_and_an_integrity_check() -> None:
    tests = select_tests(CFG, [])
    assert [t["shortname"] for t in tests] == ["migrate_multi_host.tcp.JeOS.mhm",
                                               "integrity.once.tcp.JeOS.mhm"]
    assert [t["type"] for t in tests] == ["migration_multi_host", "migration_integrity"]


def test_every_transport_variant_is_defined() -> None:
    tests = select_tests(ROOT / "cfg" / "subtests.cfg", ["only migrate_multi_host"])
    transports = {t["transport"] for t in tests}
    assert {"tcp", "exec", "fd", "tls_x509", "tls_psk", "tcp_multifd", "tcp_postcopy",
            "tcp_xbzrle", "tcp_auto_converge"} <= transports


def test_only_after_a_named_variant_block_keeps_matching() -> None:
    # Regression: `only X` where X is a variant defined after a named
    # `variants guest:` block selected nothing.
    text = """
variants guest:
    - JeOS:
        variants:
            - mhm:
                z = 3
variants:
    - migrate_multi_host:
        variants:
            - tcp:
                p = tcp
    - guide_example:
        g = 1
only JeOS.mhm
only migrate_multi_host
"""
    assert names(text) == ["migrate_multi_host.tcp.(guest=JeOS).mhm"]


def test_extra_params_and_filters_from_the_command_line() -> None:
    tests = select_tests(CFG, ["accel = tcg", "mem = 512"])
    assert tests[0]["accel"] == "tcg" and tests[0]["mem"] == "512"


def test_zero_selection_names_the_filter() -> None:
    with pytest.raises(ConfigError, match="`only nothing-here` \\(command line\\)"):
        select_tests(CFG, ["only nothing-here"])


def test_guide_guest_filter_selects_the_installed_rhel_image(tmp_path: Path) -> None:
    # The guide: edit multi-host-tests.cfg so it says `only RHEL.6.4.x86_64`;
    # the image is then rhel64-64.qcow2 in the images dir, used as it is.
    edited = (CFG.read_text().replace("only JeOS.mhm", "only RHEL.6.4.x86_64")
              .replace("include ", f"include {CFG.parent}/"))
    cfg = tmp_path / "multi-host-tests.cfg"
    cfg.write_text(edited)
    tests = select_tests(cfg, [])
    assert [t["shortname"] for t in tests] == ["migrate_multi_host.tcp.RHEL.6.4.x86_64",
                                               "integrity.once.tcp.RHEL.6.4.x86_64"]
    params = Params(tests[0]).object_params("vm1")
    [image] = image_specs("vm1", params)
    assert str(image.path) == "/var/lib/virt_test/images/rhel64-64.qcow2"
    assert image.create is False and params["mem"] == "1024"
