"""Params: per-object overrides and typed getters."""

from __future__ import annotations

import pytest

from multihost_migration.errors import ConfigError
from multihost_migration.params import Params


def test_object_params_override_and_copy() -> None:
    p = Params(mem="1024", mem_vm2="2048", mem_host1="512", vms="vm1 vm2")
    vm2 = p.object_params("vm2")
    assert vm2["mem"] == "2048" and p["mem"] == "1024"
    assert p.object_params("host1")["mem"] == "512"
    assert p.object_params("vm1")["mem"] == "1024"
    assert isinstance(vm2, Params)


def test_objects_and_lists() -> None:
    p = Params(vms="vm1  vm2", hosts=["h1", "h2"], csv="a, b")
    assert p.objects("vms") == ["vm1", "vm2"] and p.objects("none") == []
    assert p.objects("hosts") == ["h1", "h2"] and p.get("hosts")[0] == "h1"
    assert p.get_list("csv", sep=",") == ["a", "b"]


def test_typed_getters() -> None:
    p = Params(n="0x10", f="1.5", b="Yes", off="no")
    assert p.get_int("n") == 16 and p.get_float("f") == 1.5
    assert p.get_bool("b") is True and p.get_bool("off") is False
    assert p.get_int("missing", 3) == 3


@pytest.mark.parametrize("getter", ["get_int", "get_float", "get_bool"])
def test_bad_value_error_names_key_and_value(getter: str) -> None:
    p = Params(mem="lots")
    with pytest.raises(ConfigError) as exc:
        getattr(p, getter)("mem")
    assert "'mem'" in str(exc.value) and "'lots'" in str(exc.value)


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match="'mem'"):
        Params().get_int("mem")
