"""Entries' bodies read when the expansion enters them (`bodyscan`): the
same dicts as reading everything at once, bodies a filter excludes never
read, errors in a body read late still naming file and line."""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

import pytest

from multihost_migration.cartesian import Parser
from multihost_migration.cartesian.bodyscan import scan
from multihost_migration.cartesian.syntax import Reader
from multihost_migration.errors import ConfigSyntaxError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
try:
    from cartesian_bench import REAL_TREE, real_tree
finally:
    sys.path.pop(0)

TREE = """\
x = 1
variants:
    - a:
        k = a
        variants:
            - a1:
                k += 1
            - a2:
                Linux:
                    k += linux
    - b:
        k = b
        no Linux
    - c:
        only Windows
variants guest:
    - Linux:
    - Windows:
"""


def _dicts(text: str, lazy: bool, *filters: str) -> list[Any]:
    parser = Parser()
    parser._builder.lazy = lazy
    parser.parse_string(text)
    for f in filters:
        parser.parse_string(f)
    return [list(d.items()) for d in parser.get_dicts()]


@pytest.mark.parametrize("filters", [(), ("only a2",), ("only b",), ("no Linux",),
                                     ("only nothing",), ("only Windows.c",)])
def test_same_dicts_as_reading_everything(filters: tuple[str, ...]) -> None:
    assert _dicts(TREE, True, *filters) == _dicts(TREE, False, *filters)


def test_a_body_no_filter_can_reach_is_never_read() -> None:
    parser = Parser()
    parser.parse_string(TREE)
    parser.only_filter("b")
    assert [d["name"] for d in parser.get_dicts()] == ["(guest=Windows).b"]
    entries = parser.node.children[0].children[0].children
    assert [e.labels[0].name for e in entries] == ["a", "b", "c"]
    assert entries[0].lazy is not None and entries[2].lazy is not None
    assert entries[1].lazy is None


NESTED = """\
variants:
    - t1:
        only Windows
        variants:
            - n1:
                k = 1
            - n2:
                k = 2
    - t2:
        k = 3
variants guest:
    - Linux:
    - Windows:
"""


@pytest.mark.parametrize("guest", ["Linux", "Windows"])
def test_entries_whose_scope_dies_are_never_read(guest: str) -> None:
    # every path through n1 and n2 meets t1's `only Windows`: for Linux
    # it excludes them without their bodies being read
    parser = Parser()
    parser.parse_string(NESTED)
    parser.only_filter(guest)
    names = [d["name"] for d in parser.get_dicts()]
    assert names == ([f"(guest={guest}).t2"] if guest == "Linux" else
                     [f"(guest={guest}).t1.n1", f"(guest={guest}).t1.n2",
                      f"(guest={guest}).t2"])
    t1 = parser.node.children[0].children[0].children[0]
    nested = t1.children
    assert [e.labels[0].name for e in nested] == ["n1", "n2"]
    assert all((e.lazy is not None) == (guest == "Linux") for e in nested)
    assert [list(d.items()) for d in parser.get_dicts()] == _dicts(
        NESTED, False, f"only {guest}")


def test_the_collector_is_left_as_found() -> None:
    # the tree and the state graph are frozen (gc.freeze) while the dicts
    # are made, unfrozen when the generator ends or is closed
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    parser = Parser()
    parser.parse_string(TREE)
    dicts = parser.get_dicts()
    next(dicts)
    assert gc.get_freeze_count() > 0 and gc.isenabled()
    dicts.close()
    assert gc.get_freeze_count() == 0
    assert len(list(parser.get_dicts())) == 6
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_a_line_the_look_does_not_know_is_read_at_once(tmp_path: Any) -> None:
    # so the error is raised by parse_file, naming file and line, even in
    # the body of an entry no filter could reach
    cfg = tmp_path / "t.cfg"
    cfg.write_text("variants:\n    - a:\n        k = 1\n    - b:\n        k = 1\n"
                   "        variants:\n            - x:\n        oops\nonly a\n")
    with pytest.raises(ConfigSyntaxError) as err:
        Parser().parse_file(str(cfg))
    assert err.value.filename == str(cfg) and err.value.line == 8


def test_the_index_of_a_body() -> None:
    reader = Reader(TREE, "<string>", False)
    found = scan(reader.lines, 3, 4, {})         # the body of `- a:`
    assert found is not None
    assert found.keys == {"a1", "a2"} and found.words == {"Linux"}
    assert reader.lines[found.end].text == "- b:"
    # an include, a join or an unknown line: read at once
    for body in ("include x.cfg", "join a b", "a b c", "variants:\n    k = 1"):
        lines = Reader("- e:\n" + "\n".join("    " + ln for ln in body.split("\n")),
                       "<string>", False).lines
        assert scan(lines, 1, 0, {}) is None, body


@pytest.mark.parametrize("label,filters", REAL_TREE, ids=[r[0] for r in REAL_TREE])
def test_real_tree_shape_same_dicts(tmp_path: Any, label: str, filters: list[str]) -> None:
    top = real_tree(str(tmp_path), filters, False)
    assert _file_dicts(top, True) == _file_dicts(top, False)


def _file_dicts(path: str, lazy: bool) -> list[Any]:
    parser = Parser()
    parser._builder.lazy = lazy
    parser.parse_file(path)
    return [list(d.items()) for d in parser.get_dicts()]
