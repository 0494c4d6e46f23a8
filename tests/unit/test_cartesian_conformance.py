"""Our Parser against the reference (avocado-vt's cartesian_config, the
pinned avocado-framework-plugin-vt): generated configs covering every
construct (cartesian_gen.py), damaged ones, and hand-picked cases.

Any difference fails: the dicts are compared in order, each by its keys
and values in order.  Where the reference rejects a text (any exception),
ours must reject it too, with a ConfigError (never a crash), and the other
way round.  The trees the reference ships: test_cartesian_shipped.py.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Callable, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multihost_migration.cartesian import Parser
from multihost_migration.errors import ConfigError

from tests.unit.cartesian_gen import (
    configs, defaults_options, join_configs, mutated_configs)

# The reference is a pinned test dependency: a missing one fails, not skips.
from virttest import cartesian_config  # noqa: E402
logging.getLogger("virttest").setLevel(logging.CRITICAL)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

Result = Union[str, list[Any]]
Feed = Callable[[Any], None]


def _norm(value: Any) -> Any:
    if isinstance(value, dict):
        return [(k, _norm(v)) for k, v in value.items()]
    return value


def _run(factory: Any, feed: Feed, ours: bool, **options: Any) -> Result:
    try:
        parser = factory(**options)
        feed(parser)
        return [_norm(d) for d in parser.get_dicts()]
    except ConfigError:
        return "rejected"
    except Exception as err:          # the reference fails its own ways
        if ours:
            raise AssertionError(f"our parser crashed: {err!r}") from err
        return "rejected"


def check(feed: Feed, text: str = "", **options: Any) -> None:
    ref = _run(cartesian_config.Parser, feed, False, **options)
    ours = _run(Parser, feed, True, **options)
    assert ours == ref, f"options {options}, config:\n{text}"


def check_text(text: str, **options: Any) -> None:
    check(lambda p: p.parse_string(text), text, **options)


SETTINGS = dict(deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


@settings(max_examples=300, **SETTINGS)  # type: ignore[arg-type]
@given(configs())
def test_generated_configs_match_reference(text: str) -> None:
    check_text(text)


@settings(max_examples=300, **SETTINGS)  # type: ignore[arg-type]
@given(mutated_configs())
def test_damaged_configs_match_reference(text: str) -> None:
    check_text(text)


@settings(max_examples=150, **SETTINGS)  # type: ignore[arg-type]
@given(join_configs())
def test_generated_joins_match_reference(text: str) -> None:
    check_text(text)


@settings(max_examples=150, **SETTINGS)  # type: ignore[arg-type]
@given(configs(), defaults_options())
def test_defaults_mode_matches_reference(text: str,
                                         options: dict[str, Any]) -> None:
    check_text(text, **options)


def _split_feed(text: str, how: int) -> Feed:
    """Feed `text` in two parse_string calls (how 0), or as a file that
    includes its second half from sub/inc.cfg, at the top (how 1) or
    inside a variants entry (how 2)."""
    lines = text.splitlines(True)
    half = len(lines) // 2
    first, second = "".join(lines[:half]), "".join(lines[half:])

    def feed(parser: Any) -> None:
        if how == 0:
            parser.parse_string(first)
            parser.parse_string(second)
            return
        with tempfile.TemporaryDirectory() as tmp:
            os.mkdir(os.path.join(tmp, "sub"))
            with open(os.path.join(tmp, "sub", "inc.cfg"), "w") as fh:
                fh.write(second)
            include = ("include sub/inc.cfg\n" if how == 1 else
                       "variants:\n  - inc:\n    include sub/inc.cfg\n")
            with open(os.path.join(tmp, "main.cfg"), "w") as fh:
                fh.write(first + include)
            parser.parse_file(os.path.join(tmp, "main.cfg"))
    return feed


@settings(max_examples=150, **SETTINGS)  # type: ignore[arg-type]
@given(configs(), st.integers(0, 2))
def test_split_and_included_configs_match_reference(text: str, how: int) -> None:
    check(_split_feed(text, how), text)


@pytest.mark.slow
@settings(max_examples=5000, **SETTINGS)  # type: ignore[arg-type]
@given(configs())
def test_generated_configs_match_reference_exhaustive(text: str) -> None:
    check_text(text)


@pytest.mark.slow
@settings(max_examples=5000, **SETTINGS)  # type: ignore[arg-type]
@given(mutated_configs())
def test_damaged_configs_match_reference_exhaustive(text: str) -> None:
    check_text(text)


@pytest.mark.slow
@settings(max_examples=2000, **SETTINGS)  # type: ignore[arg-type]
@given(join_configs())
def test_generated_joins_match_reference_exhaustive(text: str) -> None:
    check_text(text)


@pytest.mark.slow
@settings(max_examples=2000, **SETTINGS)  # type: ignore[arg-type]
@given(configs(), defaults_options())
def test_defaults_mode_matches_reference_exhaustive(
        text: str, options: dict[str, Any]) -> None:
    check_text(text, **options)


@pytest.mark.slow
@settings(max_examples=1500, **SETTINGS)  # type: ignore[arg-type]
@given(configs(), st.integers(0, 2))
def test_split_and_included_configs_match_reference_exhaustive(
        text: str, how: int) -> None:
    check(_split_feed(text, how), text)


# -- hand-picked cases: the reference's corners --------------------------------

_V = "variants:\n - a:\n   k = 1\n - b:\n   k = 2\n"
_J = ("variants:\n - vm1:\n   k = 1\n   j = 3\n   suffix _vm1\n"
      " - vm2:\n   k = 2\n   j = 3\n   suffix _vm2\n")
LEXICAL_CASES = [
    # values keep comments, backslashes and inner quotes
    "k = a \\\n  b\n", "k = a\\\nj = 2\n", "k = 1 # c\nj = 2 // x\n",
    "k = 'a' # c\n", "k = \"a # b\" # c\n", "k =\"\n", "k = '\n", 'k = "a"b"\n',
    # comments after statements
    _V + "only a # c\n", _V + "only a,b#c\n", _V + "no a #c\n",
    _V + "only a // c\n", _V + "a: # c\n  j=2\n", _V + "a: j=2 # c\n",
    "variants: # c\n - a: # c\n - b: a # c\n", "k=1\ndel k #c\n",
    "k=1\ndel k // c\n", "k=1\nsuffix _x # c\n", "k=1\nsuffix _x#c\n",
    _V + "join a#c b\n",
    # indentation: tabs, uneven, blank and comment lines
    "variants:\n\t- a:\n\t\tk = 1\n        j = 2\n",
    "variants:\n  - a:\n\tk = 1\n", "k\t= 1\n", "  \n\t\n# x\n   // y\nk=1\n",
    "variants:\n    - a:\n  - b:\n      k = 1\n",
    # reserved keys, regular-expression keys
    "name = foo\nshortname = s\ndep = d\nk = 1\nname += x\n",
    "k1=1\nk2=2\nk=3\nk12=4\nk1|k ?= z\n", "k=1\ndel k.*\n",
    "k.1 = a\nkx1 = b\nk.1 ?= c\n", "kx1 = b\ndel z\nk.1 = a\nk.1 ?= c\n",
    _V + "k2 = ${name}/${shortname}/${dep}\nk3 = ${_name_map_file}\n",
    # keywords used as keys, and other lines the reference reads its way
    "only = 5\n", "no=5\n", "variants = 5\n", "include = 5\n", "del = 5\n",
    "suffix = 5\n", "join = 5\n", "= 5\n", "a=:b\n", "a = :b\n", "!a = 1\n",
    "variants:\nk = 1\n", "variants:\n - a:\n    variants:\nk = 1\n",
    "variants v:\n - a:\n(v=a): k = 1\n", "variants v:\n - a:\n(v=a):\n  k = 1\n",
    "variants v:\n - a:\n!(v=a): k = 1\n", "- a:\n", "variants a b:\n - x:\n",
    "variants (v:\n - a:\n", "variants [default=a] w:\n - a:\n",
    "variants w [default=b]:\n - a:\n", "variants w [default]:\n - a:\n",
    "variants w [default=a] [x] [default=b]:\n - a:\n - b:\n",
    "variants w [default=d]:\n - @d.a: a\n - d: a\n",
    # filters: separators, trailing and doubled dots, empty names
    _V + "only a..\n", _V + "only a.\n", _V + "only a...b\n", _V + "only a , b\n",
    _V + "only a ,b\n", _V + "only a,\n", _V + "only a,,b\n", _V + "only .a\n",
    _V + "only a, .b\n", _V + "only b, ..a\n", _V + "only #c\n",
    _V + "a b:\n  k = 3\n", _V + "a , b:\n  k = 3\n", _V + "a . b: k = 3\n",
    _V + "!a\n  k = 3\n", _V + "a,b: k = 3\n",
    # entries: dotted names, empty names, dependencies
    "variants:\n - a..b:\n", "variants:\n - a.:\n", "variants:\n - @:\n",
    "variants:\n - a: x..y\n", "variants:\n - a: x y\n",
    "variants:\n - a: x, .y\n", "variants v:\n - a.b: (v=c), d.e\n",
    # postfixes
    "k_max = 5\nk = 3\n", "k_max = 5G\nk = 3000\n", "k_min = 1G\nk = 2G\n",
    "k_fixed = z\n", "a_max = x\n", "k_max = x\nk = 1\n", "dep_max = 1\n",
    # suffix and substitution
    "k = 1\nsuffix _a\nj = ${k}\n", "variants:\n - a:\n   k = 1\n   suffix _x\n"
    " - b:\n   k = 1\nm = ${k}\n",
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
    "variants:\n - a:\n   k_max = 5\n   k = 1x\n - b:\njoin a c\n",
]


@pytest.mark.parametrize("text", LEXICAL_CASES + JOIN_CASES)
def test_cases_match_reference(text: str) -> None:
    check_text(text)


@pytest.mark.parametrize("options", [{"defaults": True},
                                     {"defaults": True, "expand_defaults": ["v"]}])
def test_defaults_cases_match_reference(options: dict[str, Any]) -> None:
    text = ("variants v:\n - a:\n - @b:\n   only x\n - c:\n"
            "variants:\n - x:\n   variants w [default=q]:\n    - p:\n    - q:\n"
            " - @y:\n")
    check_text(text, **options)


def test_include_and_name_map_match_reference(tmp_path: Any) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.cfg").write_text(
        "variants:\n  - p:\n    k = ${v}\n  - q:\n")
    (tmp_path / "top.cfg").write_text(
        "v = 1\ninclude sub/inner.cfg\nvariants tst:\n  - a:\n  - @b: p\n"
        "    include sub/inner.cfg\nonly a, q\n")
    path = str(tmp_path / "top.cfg")
    check(lambda p: p.parse_file(path))


def test_api_calls_match_reference(tmp_path: Any) -> None:
    path = tmp_path / "t.cfg"
    path.write_text(_V + "variants:\n - x:\n - y:\n")

    def feed(parser: Any) -> None:
        parser.parse_file(str(path))
        parser.only_filter("a")
        parser.no_filter("y")
        parser.assign("m", "${k}-z")
    check(feed)
    ours, ref = Parser(str(path)), cartesian_config.Parser(str(path))
    assert [_norm(d) for d in ours.get_dicts()] == [_norm(d) for d in ref.get_dicts()]


def test_second_get_dicts_matches_reference() -> None:
    # the reference merges suffixed keys only in its first get_dicts()
    text = _J + "join vm1 vm2\n"
    ours, ref = Parser(), cartesian_config.Parser()
    ours.parse_string(text)
    ref.parse_string(text)
    for _ in range(2):
        assert ([_norm(d) for d in ours.get_dicts()]
                == [_norm(d) for d in ref.get_dicts()])


_PROJECT_CFG = os.path.join(os.path.dirname(__file__), "..", "..", "cfg")


@pytest.mark.parametrize("name", sorted(
    f for f in os.listdir(_PROJECT_CFG) if f.endswith(".cfg"))
    if os.path.isdir(_PROJECT_CFG) else [])
def test_project_cfg_files_match_reference(name: str) -> None:
    path = os.path.join(_PROJECT_CFG, name)
    check(lambda p: p.parse_file(path), path)


def test_benchmark_inputs_match_reference(tmp_path: Any) -> None:
    # the generated product and the small file of benchmarks/cartesian_bench.py
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..",
                                    "benchmarks"))
    try:
        from cartesian_bench import SMALL, product_text
    finally:
        sys.path.pop(0)
    check_text(SMALL)
    check_text(product_text((2, 3, 3, 2, 2, 2, 2), base_keys=50))
