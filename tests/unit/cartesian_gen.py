"""Hypothesis strategies that write random Cartesian configs.

Shared by the conformance tests; every construct of the format appears:

* ``variants`` blocks, unnamed and named (``variants name:``), with
  ``[default=...]`` (also dotted and not matching any entry), nested in
  entries, several in a row; entries with ``@``, dotted names
  (``- a.b:``) and dependencies (``- a: b, c.d, e..f``);
* ``only`` and ``no`` with ``,`` and space alternatives, ``..``, ``.``
  and ``(var=name)`` words, trailing comments;
* conditional blocks ``filter:`` and ``!filter:``, with a block and with
  one statement on the same line, nested;
* every operator ``= += <= ~= ?= ?+= ?<=`` (regular-expression keys too),
  ``del``, quoted values, ``${key}`` substitution (also of unset keys and
  of ``name``, ``shortname``, ``dep`` and the file maps), the reserved
  keys as targets, ``k_max``/``k_min``/``k_fixed`` keys;
* ``suffix`` (several per block), ``join`` (see `MAX_FACTORS`);
* comments (whole-line ``#`` and ``//``, trailing ``#`` where the format
  allows one), blank lines, tab indentation, odd indentation and
  trailing backslashes;
* and, in `mutated_configs`, single-character damage anywhere (inserted
  or deleted characters: quotes, brackets, operators, ``:``, ``$``...),
  which the reference accepts or rejects in its own ways.

``include`` and successive ``parse_string`` calls are made by the tests
from these texts (see test_cartesian_conformance.py).
"""

from __future__ import annotations

from hypothesis import strategies as st

NAMES = ("a", "b", "c", "d", "a1", "x-y", "k_1")
VARS = ("v", "w")
ENTRY_NAMES = NAMES + ("b.c", "a.b", "c.a")
KEYS = ("k", "k1", "k2", "a", "v", "k_max", "k_min", "k_fixed", "name",
        "shortname", "dep", "k.*", "k[12]")
REGEX_KEYS = ("k.*", "k[12]", ".x", "k1", "k|a", "k_.*")
VALUES = ("1", "2", "x y", "${k}", "${k1}${k2}", "${name}", "${nokey}x",
          "'q'", '"q"', "5G", "3", "10M", " # c", "a:b", "\\", '"', "$k",
          "${shortname}", "${dep}", "${_name_map_file}", "", "512M", "2G")
OPS = ("=", "+=", "<=", "~=", "?=", "?+=", "?<=", " = ", " += ", " ?= ")
SUFFIXES = ("_s1", "_s2", "s3")
# With three or more join filters the reference loses dicts (the failed-
# filter cache on its tree nodes outlives the repeated expansions a join
# makes), so the generated joins have at most two; we yield the whole
# product (see test_cartesian.py, test_join_of_three_filters...).
MAX_FACTORS = 2
DAMAGE = tuple("abc.,:=!@-()[]#\"' \t/${}+<?~_01") + (
    "..", "variants", "only ", "no ", "del ", "suffix ", "join ")


@st.composite
def words(draw: st.DrawFn, named: bool = True) -> str:
    if named and draw(st.integers(0, 4)) == 0:
        return f"({draw(st.sampled_from(VARS))}={draw(st.sampled_from(NAMES))})"
    return draw(st.sampled_from(NAMES))


@st.composite
def filters(draw: st.DrawFn, named: bool = True, alternatives: int = 3,
            separators: tuple[str, ...] = (", ", ",", " ", " , ")) -> str:
    alts = []
    for _ in range(draw(st.integers(1, alternatives))):
        chains = [".".join(draw(st.lists(words(named), min_size=1, max_size=2)))
                  for _ in range(draw(st.integers(1, 2)))]
        alts.append("..".join(chains))
    return draw(st.sampled_from(separators)).join(alts)


@st.composite
def comment(draw: st.DrawFn) -> str:
    """Nothing, mostly; else a trailing comment."""
    return draw(st.sampled_from(["", "", "", " # c", "#c"]))


@st.composite
def assignment(draw: st.DrawFn) -> str:
    op = draw(st.sampled_from(OPS))
    keys = REGEX_KEYS if op.strip().startswith("?") else KEYS
    return f"{draw(st.sampled_from(keys))}{op}{draw(st.sampled_from(VALUES))}"


@st.composite
def join(draw: st.DrawFn) -> str:
    return (f"join {draw(filters(named=False, alternatives=MAX_FACTORS))}"
            f"{draw(comment())}")


@st.composite
def simple_stmt(draw: st.DrawFn, joins: bool = True) -> str:
    kind = draw(st.integers(0, 19))
    if kind <= 9:
        return draw(assignment())
    if kind <= 12:
        return (f"{draw(st.sampled_from(['only', 'no']))} {draw(filters())}"
                f"{draw(comment())}")
    if kind == 13:
        return f"del {draw(st.sampled_from(KEYS[:8]))}{draw(comment())}"
    if kind == 14:
        return f"suffix {draw(st.sampled_from(SUFFIXES))}{draw(comment())}"
    if kind == 15 and joins:
        return draw(join())
    return f"{draw(st.sampled_from(KEYS[:8]))} = {draw(st.sampled_from(VALUES))}"


@st.composite
def block(draw: st.DrawFn, indent: int, depth: int, budget: list[int]) -> list[str]:
    lines: list[str] = []
    pad = " " * indent
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 9))
        if kind <= 4 or depth == 0:
            lines.append(pad + draw(simple_stmt()))
        elif kind <= 6:
            neg = "!" if draw(st.integers(0, 2)) == 0 else ""
            named = draw(st.integers(0, 9)) == 0
            head = (f"{pad}{neg}"
                    f"{draw(filters(named=named, separators=(', ', ',')))}:")
            if draw(st.booleans()):
                lines.append(f"{head} {draw(simple_stmt(joins=False))}")
            else:
                lines.append(head)
                for _ in range(draw(st.integers(0, 2))):
                    lines.append(pad + "    " + draw(simple_stmt(joins=False)))
        elif budget[0] > 0:
            budget[0] -= 1
            lines.extend(draw(variants(indent, depth, budget)))
    return lines


@st.composite
def variants(draw: st.DrawFn, indent: int, depth: int,
             budget: list[int]) -> list[str]:
    pad = " " * indent
    var = draw(st.sampled_from(["", " v", " w"]))
    names = draw(st.lists(st.sampled_from(ENTRY_NAMES), min_size=1,
                          max_size=3, unique=True))
    meta = ""
    if draw(st.integers(0, 3)) == 0:
        meta = f" [default={draw(st.sampled_from(names + ['b.c', 'd']))}]"
    lines = [f"{pad}variants{var}{meta}:{draw(comment())}"]
    step = draw(st.sampled_from([2, 4, 4, 4]))
    for name in names:
        at = "@" if draw(st.integers(0, 4)) == 0 else ""
        deps = ""
        if draw(st.integers(0, 6)) == 0:
            deps = " " + draw(filters(named=False))
        lines.append(f"{pad}{' ' * step}- {at}{name}:{deps}{draw(comment())}")
        if depth > 0 and draw(st.integers(0, 4)):
            lines.extend(draw(block(indent + step + 4, depth - 1, budget)))
    return lines


def _dress(draw: st.DrawFn, lines: list[str]) -> str:
    """Blank and comment lines, tabs for eight spaces."""
    out = []
    for line in lines:
        extra = draw(st.integers(0, 19))
        if extra == 0:
            out.append(draw(st.sampled_from(["# note", "    // note", "", "  "])))
        elif extra == 1 and line.startswith(" " * 8):
            line = "\t" + line[8:]
        out.append(line)
    return "\n".join(out) + "\n"


@st.composite
def configs(draw: st.DrawFn) -> str:
    """A whole config text."""
    budget = [draw(st.integers(1, 4))]
    return _dress(draw, draw(block(0, draw(st.integers(1, 3)), budget)))


@st.composite
def mutated_configs(draw: st.DrawFn) -> str:
    """A config with one to three characters inserted or deleted."""
    lines = draw(configs()).splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        kind = draw(st.integers(0, 3))
        if kind <= 1:
            at = draw(st.integers(0, len(line)))
            line = line[:at] + draw(st.sampled_from(DAMAGE)) + line[at:]
        elif kind == 2 and line:
            at = draw(st.integers(0, len(line) - 1))
            line = line[:at] + line[at + 1:]
        else:
            line = line.rstrip() + draw(st.sampled_from([" ", "\\", " //x", "#x"]))
        lines[i] = line
    return "\n".join(lines) + "\n"


@st.composite
def join_configs(draw: st.DrawFn) -> str:
    """A config built for ``join``: entries that set keys and ``suffix``
    them, optionally inside another variants block, joined by name, and
    statements after the join (substitution, regex operators, del)."""
    budget = [draw(st.integers(0, 1))]
    lines = draw(block(0, 1, budget)) if draw(st.booleans()) else []
    names = draw(st.lists(st.sampled_from(NAMES), min_size=2, max_size=3,
                          unique=True))
    var = draw(st.sampled_from(["", " v"]))
    lines.append(f"variants{var}:")
    for name in names:
        lines.append(f"    - {name}:")
        for _ in range(draw(st.integers(0, 3))):
            lines.append("        " + draw(assignment()))
        if draw(st.integers(0, 3)):
            lines.append(f"        suffix _{name}")
    if draw(st.booleans()):
        lines.extend(["variants:", "    - p:", "        k1 = p", "    - q:"])
    factors = draw(st.lists(st.sampled_from(names), min_size=1,
                            max_size=MAX_FACTORS))
    if draw(st.booleans()) and "- p:" in "\n".join(lines):
        factors[0] = "p." + factors[0]
    lines.append("join " + " ".join(factors))
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(simple_stmt(joins=False)))
    return "\n".join(lines) + "\n"


@st.composite
def defaults_options(draw: st.DrawFn) -> dict[str, object]:
    """Parser(...) keywords for the ``defaults`` mode."""
    return {"defaults": True,
            "expand_defaults": draw(st.lists(st.sampled_from(["v", "w", "x"]),
                                             max_size=2, unique=True))}
