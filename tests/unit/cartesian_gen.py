"""Hypothesis strategies that write random Cartesian configs.

Shared by the conformance tests; every construct of the format appears:
named and unnamed variants, ``@`` entries, ``[default=...]``, dependencies,
nested variants, only/no with ``,`` ``..`` ``.`` and ``(var=name)``,
block and single-line conditions (also negated), every operator, ``del``,
``${key}`` substitution, ``suffix``, ``join``, comments (whole-line ``#``
and ``//``, trailing ``#`` where the format allows one), tab indentation
and trailing backslashes.
"""

from __future__ import annotations

from hypothesis import strategies as st

NAMES = ("a", "b", "c", "d", "e")
VARS = ("v1", "v2")
# An entry "b.c" is two labels, b then c, as far as filters are concerned.
ENTRY_NAMES = NAMES + ("b.c", "d.a")
KEYS = ("k1", "k2", "k3", "kx")
SUFFIXES = ("_s1", "_s2", "s3")
# With three or more join filters the reference loses dicts (the failed-
# filter cache on its tree nodes outlives the repeated expansions a join
# makes), so the generated joins have at most two.
MAX_FACTORS = 2
OPS = ("=", "+=", "<=", "~=", "?=", "?+=", "?<=")
REGEX_KEYS = ("k.*", "k[12]", ".x", "k1")


@st.composite
def words(draw: st.DrawFn, named: bool = True) -> str:
    name = draw(st.sampled_from(NAMES))
    if named and draw(st.integers(0, 4)) == 0:
        return f"({draw(st.sampled_from(VARS))}={name})"
    return name


@st.composite
def filters(draw: st.DrawFn, named: bool = True, alternatives: int = 2) -> str:
    """A filter; `named` allows (var=name) words, which the reference only
    understands after only/no, not in conditional blocks."""
    alts = []
    for _ in range(draw(st.integers(1, alternatives))):
        chains = [".".join(draw(st.lists(words(named), min_size=1, max_size=2)))
                  for _ in range(draw(st.integers(1, 2)))]
        alts.append("..".join(chains))
    seps = [", ", ",", " "] if named else [", ", ","]
    return draw(st.sampled_from(seps)).join(alts)


@st.composite
def values(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(
        ["x", "y1", "${k1}", "${k2}", "${nokey}", "$k1", " z", "'q'", "\\",
         " # c", "//d"]),
        min_size=0, max_size=3))
    value = "".join(parts)
    if draw(st.booleans()) and value:
        return f'"{value}"'
    return value


@st.composite
def assignment(draw: st.DrawFn) -> str:
    op = draw(st.sampled_from(OPS))
    key = draw(st.sampled_from(REGEX_KEYS if op.startswith("?") else KEYS))
    space = draw(st.sampled_from([" ", ""]))
    return f"{key}{space}{op}{space}{draw(values())}"


@st.composite
def simple_stmt(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 10))
    if kind <= 5:
        return draw(assignment())
    if kind == 6:
        return f"del {draw(st.sampled_from(KEYS))}{draw(comment())}"
    if kind == 7:
        return f"suffix {draw(st.sampled_from(SUFFIXES))}"
    return (f"{draw(st.sampled_from(['only', 'no']))} {draw(filters())}"
            f"{draw(comment())}")


@st.composite
def comment(draw: st.DrawFn) -> str:
    """Nothing, mostly; else a trailing comment."""
    return draw(st.sampled_from(["", "", "", " # c", "#c"]))


@st.composite
def join(draw: st.DrawFn) -> str:
    factors = draw(st.lists(filters(named=False, alternatives=1),
                            min_size=1, max_size=MAX_FACTORS))
    return f"join {' '.join(factors)}{draw(comment())}"


@st.composite
def block(draw: st.DrawFn, indent: int, depth: int,
          budget: list[int]) -> list[str]:
    lines: list[str] = []
    pad = " " * indent
    joined = False
    for _ in range(draw(st.integers(1 if depth else 0, 4))):
        kind = draw(st.integers(0, 10))
        if kind <= 4:
            lines.append(pad + draw(simple_stmt()))
        elif kind == 10 and not joined:   # one join per block (MAX_FACTORS)
            joined = True
            lines.append(pad + draw(join()))
        elif kind <= 6 and depth > 0:
            neg = "!" if draw(st.integers(0, 3)) == 0 else ""
            head = f"{pad}{neg}{draw(filters(named=False))}:"
            if draw(st.booleans()):
                lines.append(f"{head} {draw(assignment())}")
            else:
                lines.append(head)
                for _ in range(draw(st.integers(1, 3))):
                    lines.append(pad + "    " + draw(simple_stmt()))
        elif budget[0] > 0:
            budget[0] -= 1
            lines.extend(draw(variants(indent, depth, budget)))
    return lines


@st.composite
def variants(draw: st.DrawFn, indent: int, depth: int,
             budget: list[int]) -> list[str]:
    pad = " " * indent
    var = draw(st.sampled_from([None, *VARS]))
    names = draw(st.lists(st.sampled_from(ENTRY_NAMES), min_size=1,
                          max_size=3, unique=True))
    meta = ""
    if var and draw(st.booleans()):
        meta = f" [default={draw(st.sampled_from(names))}]"
    lines = [f"{pad}variants{' ' + var if var else ''}{meta}:{draw(comment())}"]
    for name in names:
        at = "@" if draw(st.integers(0, 4)) == 0 else ""
        deps = ""
        if draw(st.integers(0, 5)) == 0:
            deps = " " + ", ".join(draw(st.lists(st.sampled_from(NAMES),
                                                 min_size=1, max_size=2)))
        lines.append(f"{pad}    - {at}{name}:{deps}{draw(comment())}")
        if depth > 0:
            lines.extend(draw(block(indent + 8, depth - 1, budget)))
    return lines


@st.composite
def configs(draw: st.DrawFn) -> str:
    """A whole config text."""
    budget = [draw(st.integers(1, 4))]
    lines = draw(block(0, 2, budget))
    out = []
    for line in lines:
        extra = draw(st.integers(0, 19))
        if extra == 0:
            out.append(draw(st.sampled_from(["# note", "    // note", ""])))
        elif extra == 1 and line.startswith(" " * 8):
            line = "\t" + line[8:]        # the same indentation, as a tab
        out.append(line)
    return "\n".join(out) + "\n"


@st.composite
def join_configs(draw: st.DrawFn) -> str:
    """A config built for ``join``: entries that set keys and ``suffix``
    them, optionally nested in another variants block, joined by name, and
    statements after the join (substitution, regex operators, del)."""
    budget = [draw(st.integers(0, 1))]
    lines = draw(block(0, 1, budget)) if draw(st.booleans()) else []
    names = draw(st.lists(st.sampled_from(NAMES), min_size=2, max_size=3,
                          unique=True))
    var = draw(st.sampled_from(["", " v1"]))
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
    if draw(st.booleans()) and "p" in "\n".join(lines):
        factors[0] = "p." + factors[0] if draw(st.booleans()) else factors[0]
    lines.append("join " + " ".join(factors))
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(simple_stmt()))
    return "\n".join(lines) + "\n"
