"""Unit tests of the Cartesian parser: semantics and error reporting."""

from __future__ import annotations

from typing import Any

import pytest

from multihost_migration.cartesian import Parser
from multihost_migration.errors import (ConfigError, ConfigSyntaxError,
                                        MissingIncludeError)


def dicts(text: str) -> list[dict[str, Any]]:
    p = Parser()
    p.parse_string(text)
    return list(p.get_dicts())


def names(text: str) -> list[str]:
    return [str(d["name"]) for d in dicts(text)]


def test_later_variants_are_outer_and_names_ordered() -> None:
    cfg = "variants:\n - a:\n - b:\nvariants:\n - x:\n - y:\n"
    assert names(cfg) == ["x.a", "x.b", "y.a", "y.b"]


def test_filters_or_and_adjacent() -> None:
    cfg = ("variants:\n - a:\n - b:\nvariants:\n - x:\n - y:\n"
           "only x.a, y..b\n")
    assert names(cfg) == ["x.a", "y.b"]
    assert names("variants:\n - a:\n - b:\nvariants:\n - x:\nonly a.x\n") == []


def test_named_variants_set_key_and_match_var_filter() -> None:
    cfg = "variants tst [default=q]:\n - p:\n - q:\nonly (tst=q)\n"
    (d,) = dicts(cfg)
    assert d["name"] == "(tst=q)" and d["tst"] == "q" and d["shortname"] == ""


def test_at_prefix_dropped_from_shortname_and_deps() -> None:
    d = dicts("variants:\n - x:\n - @y: x\n")[1]
    assert (d["name"], d["shortname"], d["dep"]) == ("y", "", ["x"])


def test_operators_and_conditions() -> None:
    cfg = ("k = 1\nvariants:\n - p:\n - q:\n!p: k = 2\np:\n   k += 3\n"
           "   k ?<= 6\n   zz ~= 7\n   k ~= 8\nq:\n   del k\n")
    p, q = dicts(cfg)
    assert (p["k"], p["zz"]) == ("613", "7") and "k" not in q


def test_substitution_stops_at_first_unset_key() -> None:
    (d,) = dicts("b = 1\nc = ${b}${zz}${b}\ne = ${b}-${b}\n")
    assert d["c"] == "1${zz}${b}" and d["e"] == "1-1"


def test_error_points_at_line_and_column() -> None:
    with pytest.raises(ConfigSyntaxError) as exc:
        dicts("a = 1\nonly a..\n")
    err = exc.value
    assert (err.filename, err.line, err.column) == ("<string>", 2, 6)
    assert "only a.." in str(err) and "<string>:2:6" in str(err)


def test_var_filter_in_condition_is_an_error_not_garbage() -> None:
    with pytest.raises(ConfigSyntaxError, match="cannot start a conditional"):
        dicts("variants v:\n - a:\n(v=a):\n    k = 1\n")


def test_entry_outside_variants_is_an_error() -> None:
    with pytest.raises(ConfigSyntaxError, match="outside a variants"):
        dicts("- a:\n")


def test_missing_include_names_including_file(tmp_path: Any) -> None:
    top = tmp_path / "top.cfg"
    top.write_text("a = 1\ninclude nothere.cfg\n")
    with pytest.raises(MissingIncludeError) as exc:
        Parser().parse_file(str(top))
    assert exc.value.filename == str(top) and exc.value.line == 2
    assert str(tmp_path / "nothere.cfg") in str(exc.value)


def test_include_is_relative_to_including_file(tmp_path: Any) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.cfg").write_text("include b.cfg\n")
    (tmp_path / "d" / "b.cfg").write_text("k = v\n")
    (tmp_path / "top.cfg").write_text("include d/a.cfg\n")
    p = Parser()
    p.parse_file(str(tmp_path / "top.cfg"))
    assert [d["k"] for d in p.get_dicts()] == ["v"]


def test_dotted_entry_name_is_one_label_per_part() -> None:
    cfg = "variants v:\n - 7.0:\n - 6.1:\n - 7:\nonly 7..0\n"
    (d,) = dicts(cfg)
    assert (d["name"], d["shortname"], d["v"]) == ("(v=7).(v=0)", "7.0", "7.0")


def test_join_multiplies_and_keeps_differing_suffixed_keys() -> None:
    cfg = ("variants:\n - vm1:\n   k = 1\n   j = 3\n   suffix _vm1\n"
           " - vm2:\n   k = 2\n   j = 3\n   suffix _vm2\njoin vm1 vm2\n")
    (d,) = dicts(cfg)
    assert (d["name"], d["k_vm1"], d["k_vm2"], d["j"]) == ("vm1.vm2", "1", "2", "3")
    assert "k" not in d and "j_vm1" not in d


def test_join_of_three_filters_is_the_full_product() -> None:
    # The reference loses dicts here (see cartesian_gen.MAX_FACTORS); we
    # yield the whole product its documentation describes.
    cfg = "variants:\n - a:\n - b:\nvariants:\n - p:\n - q:\njoin a b a\n"
    assert len(names(cfg)) == 8


def test_join_of_names_without_a_differing_character_is_an_error() -> None:
    with pytest.raises(ConfigError, match="cannot merge the names"):
        dicts("variants:\n - a:\n - b:\njoin a a\n")
