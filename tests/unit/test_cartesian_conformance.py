"""Our Parser against the reference (avocado-vt's cartesian_config):
generated configs covering every construct, and the reference's own trees.
Any difference in the dicts is a failure."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from multihost_migration.cartesian import Parser
from multihost_migration.errors import ConfigError

from tests.unit.cartesian_gen import configs, join_configs
from tests.unit.cartesian_shipped import shared_cfg_dir, shipped_tree

# The reference is a pinned test dependency: a missing one fails, not skips.
from virttest import cartesian_config  # noqa: E402
logging.getLogger("virttest").setLevel(logging.CRITICAL)


def _run(factory: Any, text: str | None = None, path: str | None = None) -> Any:
    parser = factory()
    if path is not None:
        parser.parse_file(path)
    else:
        parser.parse_string(text)
    return list(parser.get_dicts())


def _both(text: str) -> tuple[Any, Any]:
    try:
        ref = _run(cartesian_config.Parser, text)
    except Exception as err:       # the reference rejects the text
        ref = f"error: {type(err).__name__}"
    try:
        ours = _run(Parser, text)
    except ConfigError as err:
        ours = f"error: {err}"
    return ref, ours


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(configs())
def test_generated_configs_match_reference(text: str) -> None:
    ref, ours = _both(text)
    if isinstance(ref, str) and isinstance(ours, str):
        return
    assert ours == ref, text


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(configs())
def test_generated_configs_match_reference_exhaustive(text: str) -> None:
    ref, ours = _both(text)
    if isinstance(ref, str) and isinstance(ours, str):
        return
    assert ours == ref, text


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(join_configs())
def test_generated_joins_match_reference(text: str) -> None:
    ref, ours = _both(text)
    if isinstance(ref, str) and isinstance(ours, str):
        return
    assert ours == ref, text


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(join_configs())
def test_generated_joins_match_reference_exhaustive(text: str) -> None:
    ref, ours = _both(text)
    if isinstance(ref, str) and isinstance(ours, str):
        return
    assert ours == ref, text


_V = "variants:\n - a:\n   k = 1\n - b:\n   k = 2\n"
_J = ("variants:\n - vm1:\n   k = 1\n   j = 3\n   suffix _vm1\n"
      " - vm2:\n   k = 2\n   j = 3\n   suffix _vm2\n")
LEXICAL_CASES = [
    "k = a \\\n  b\n", "k = a\\\nj = 2\n", "k = 1 # c\nj = 2 // x\n",
    _V + "only a # c\n", _V + "only a,b#c\n", _V + "no a #c\n",
    _V + "only a // c\n", _V + "a: # c\n  j=2\n", _V + "a: j=2 # c\n",
    "variants: # c\n - a: # c\n - b: a # c\n", "k=1\ndel k #c\n",
    "k=1\ndel k // c\n", "k = 'a' # c\n", "k = \"a # b\" # c\n",
    "variants:\n\t- a:\n\t\tk = 1\n        j = 2\n",
    "variants:\n  - a:\n\tk = 1\n", "k\t= 1\n", "  \n\t\n# x\n   // y\nk=1\n",
    "k=1\nsuffix _x # c\n", "k=1\nsuffix _x#c\n", _V + "join a#c b\n",
    "name = foo\nshortname = s\ndep = d\nk = 1\nname += x\n",
    "k1=1\nk2=2\nk=3\nk12=4\nk1|k ?= z\n", "k=1\ndel k.*\n",
]
JOIN_CASES = [
    _J + "join vm1 vm2\n", _J + "join vm1, vm2\n", _J + "join vm1\njoin vm2\n",
    _J + "join vm2 vm1\nm = ${k}\nk_vm1 ?= 9\n", _J + "join vm1 vm2\ndel k_vm1\n",
    _J + "join vm1 vm1\n", _J + "variants:\n - p:\n - q:\njoin vm1 vm2\n",
    _J + "variants:\n - p:\n - q:\njoin p.vm1 q.vm2\n",
    _J + "join vm1 vm2\nvariants:\n - p:\n - q:\n",
    _J + "variants:\n - p:\n   join vm1 vm2\n - q:\n",
    _J + "variants:\n - p:\n - q:\np:\n  join vm1 vm2\n",
    _J + "variants v:\n - p:\n   suffix _p\n   k = 7\n - q:\njoin p q\n",
    "variants:\n - a:\n   k = 1\n   suffix _x\n   variants:\n    - c:\n"
    "      suffix _c\n      j = 2\n - b:\n   k = 5\n   j = 6\njoin a b\n",
    "k = 0\nsuffix _t\nvariants:\n - a:\n   k = 1\n - b:\n   k = 5\n"
    "join a b\n",
    "variants:\n - vm1:\n - @vm2:\njoin vm1 vm2\n",
]


@pytest.mark.parametrize("text", LEXICAL_CASES + JOIN_CASES)
def test_cases_match_reference(text: str) -> None:
    ref, ours = _both(text)
    if isinstance(ref, str) and isinstance(ours, str):
        return
    assert ours == ref


def test_include_and_name_map_match_reference(tmp_path: Any) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.cfg").write_text(
        "variants:\n  - p:\n    k = ${v}\n  - q:\n")
    (tmp_path / "top.cfg").write_text(
        "v = 1\ninclude sub/inner.cfg\nvariants tst:\n  - a:\n  - @b: p\n"
        "only a, q\n")
    path = str(tmp_path / "top.cfg")
    assert _run(Parser, path=path) == _run(cartesian_config.Parser, path=path)


SHIPPED_CASES = [
    ("machines.cfg", "guest-hw.cfg"),
    ("base.cfg", "machines.cfg", "guest-hw.cfg", "guest-os.cfg"),
]
FILTERS = [
    ["only qcow2", "only virtio_blk", "only smp2", "only e1000", "only RHEL.7"],
    ["only raw", "only ide, virtio_scsi", "only up", "only Windows", "no Win2008"],
    ["only i440fx", "only qcow2..virtio_net..smp2", "only Linux.Fedora, RHEL.8"],
]


@pytest.mark.parametrize("filters", FILTERS[:1])
def test_shipped_tree_small(tmp_path: Any, filters: list[str]) -> None:
    path = shipped_tree(str(tmp_path), filters[:4], parts=("guest-hw.cfg",))
    ours = _run(Parser, path=path)
    assert ours, "the filters must select something for the test to mean much"
    assert ours == _run(cartesian_config.Parser, path=path)


@pytest.mark.slow
@pytest.mark.parametrize("parts", SHIPPED_CASES)
@pytest.mark.parametrize("filters", FILTERS)
def test_shipped_tree(tmp_path: Any, parts: tuple[str, ...],
                      filters: list[str]) -> None:
    path = shipped_tree(str(tmp_path), filters, parts)
    assert _run(Parser, path=path) == _run(cartesian_config.Parser, path=path)


def test_shipped_files_exist() -> None:
    for name in ("base.cfg", "guest-hw.cfg", "guest-os"):
        assert os.path.exists(os.path.join(shared_cfg_dir(), name))
