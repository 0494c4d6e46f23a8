"""Security review (issue #15): VM names become directory and file names in
the results and on the hosts; `vms = /` must not put logs elsewhere."""

from __future__ import annotations

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.params import Params


@pytest.mark.parametrize("bad", ["/", "..", ".", "../x", "vm1/../..", "/etc", "vm 1;id",
                                 "vm$1", "vm\\1", "é"])
def test_bad_vm_names_are_refused_naming_parameter_and_value(bad: str) -> None:
    params = Params({"vms": ["vm1", bad]})
    with pytest.raises(ConfigError) as info:
        params.objects("vms")
    assert "'vms'" in str(info.value) and repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", ["/", "..", "vm1 ../x"])
def test_bad_vm_names_in_cfg_strings_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="'vms'"):
        Params({"vms": bad}).objects("vms")


def test_good_vm_names_pass() -> None:
    assert Params({"vms": "vm1 VM_2 guest-3.x ..a"}).objects("vms") == \
        ["vm1", "VM_2", "guest-3.x", "..a"]
    assert Params({}).objects("vms") == []


def test_other_lists_keep_paths() -> None:
    assert Params({"scenario_dirs": "../examples /opt/x"}).objects("scenario_dirs") == \
        ["../examples", "/opt/x"]
