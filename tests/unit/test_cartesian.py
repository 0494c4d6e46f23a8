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
        dicts("a = 1\nonly a...b\n")
    err = exc.value
    assert (err.filename, err.line, err.column) == ("<string>", 2, 10)
    assert "only a...b" in str(err) and "<string>:2:10" in str(err)


def test_var_filter_before_colon_is_an_assignment_as_in_the_reference() -> None:
    # "(v=a): k = 1" holds an operator before its ':', so the reference reads
    # it as the assignment "(v" = "a): k = 1"; so do we (with a warning)
    (d,) = dicts("variants v:\n - a:\n(v=a): k = 1\n")
    assert d["(v"] == "a): k = 1" and "k" not in d


def test_entry_outside_variants_is_an_error() -> None:
    with pytest.raises(ConfigSyntaxError, match="found '-'") as exc:
        dicts("- a:\n")
    assert (exc.value.line, exc.value.column) == (1, 1)


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


def test_filter_with_trailing_dots_is_the_filter_without_them() -> None:
    # the reference ignores a trailing '.' or '..' in a filter
    assert names("variants:\n - a:\n - b:\nonly a..\n") == ["a"]


def test_dependencies_are_one_dep_per_chain() -> None:
    d = dicts("variants:\n - x:\n - y:\nvariants:\n - p: x, a..b y.z\n")[0]
    assert d["dep"] == ["x", "a", "b", "y.z"]


def test_default_entry_by_meta_is_out_of_the_shortname() -> None:
    ds = dicts("variants v [default=q]:\n - p:\n - q:\n")
    assert [d["shortname"] for d in ds] == ["p", ""]


def test_defaults_mode_keeps_the_default_entry_if_it_yields() -> None:
    cfg = ("variants:\n - x:\n - @y:\nvariants w:\n - a:\n - @b:\n"
           "   only x\n - c:\n")
    p = Parser(defaults=True)
    p.parse_string(cfg)
    # block w: its default b yields (with x), so only b; block 1: y is the
    # default but b needs x, so the default yields nothing: all entries
    assert [d["name"] for d in p.get_dicts()] == ["(w=b).x"]
    p = Parser(defaults=True, expand_defaults=["w"])
    p.parse_string(cfg)
    assert [d["name"] for d in p.get_dicts()] == ["(w=a).y", "(w=b).x",
                                                  "(w=c).y"]


def test_name_maps_and_key_order() -> None:
    d = dicts("k = 1\nvariants:\n - a:\n   j = 2\nm = 3\n")[0]
    assert list(d) == ["name", "dep", "shortname", "k", "j", "_name_map_file",
                       "_short_name_map_file", "m"]
    assert d["_name_map_file"] == {"<string>": "a"}


def test_postfix_keys_set_their_base_key() -> None:
    (d,) = dicts("mem = 2048\nmem_max = 1024\nsmp_min = 4\nsmp = 2\n"
                 "cpu_fixed = host\n")
    assert (d["mem"], d["smp"], d["cpu"]) == ("1024", "4", "host")


def test_postfix_error_names_the_line() -> None:
    with pytest.raises(ConfigSyntaxError, match="cannot be compared") as exc:
        dicts("mem = lots\nmem_max = 4G\n")
    assert exc.value.line == 2


def test_substitution_sees_the_reserved_keys() -> None:
    (d,) = dicts("variants:\n - a:\n   k = ${name}/${shortname}\n")
    assert d["k"] == "a/a"


def test_regex_operators_and_del() -> None:
    (d,) = dicts("kill_vm = yes\nkill_vm_on_error = yes\nk = 1\n"
                 "kill_vm.* ?= no\nk ?+= 2\ndel kill_vm\n")
    assert "kill_vm" not in d and d["kill_vm_on_error"] == "no" and d["k"] == "12"


def test_suffix_keeps_differing_values_apart() -> None:
    cfg = ("variants:\n - vm1:\n   mem = 1\n   suffix _vm1\n"
           " - vm2:\n   mem = 2\n   suffix _vm2\njoin vm1 vm2\n")
    (d,) = dicts(cfg)
    assert (d["mem_vm1"], d["mem_vm2"]) == ("1", "2")


def test_only_filter_no_filter_and_assign_methods() -> None:
    p = Parser()
    p.parse_string("variants:\n - a:\n - b:\n - c:\n")
    p.only_filter("a, b")
    p.no_filter("b")
    p.assign("k", "v")
    assert [(d["name"], d["k"]) for d in p.get_dicts()] == [("a", "v")]
    assert p.only_filters == ["only a, b"] and p.no_filters == ["no b"]


def test_parser_takes_a_file(tmp_path: Any) -> None:
    path = tmp_path / "x.cfg"
    path.write_text("variants:\n - a:\n")
    assert [d["_name_map_file"] for d in Parser(str(path)).get_dicts()] == [
        {"x.cfg": "a"}]
