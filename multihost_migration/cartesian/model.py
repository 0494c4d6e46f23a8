"""The variant tree the syntax reader builds and the expander walks.

It has the shape of the reference parser's tree, so that both mean the
same: every ``variants`` block becomes a node whose children are its
entries; each entry's node has, as its only child, the node holding
everything parsed before the block in the same scope (or, when the entry's
body holds a ``variants`` block itself, the last such block's node).  The
last ``variants`` block of a file is the root; a dict's name lists labels
from the outermost (last) block inwards; applying the contents of a path
from the leaf up to the root applies the statements in file order.

A node's `content` holds the statements of its scope, in order:
assignments (runs of plain ``key = value`` are merged into one `Batch`, as
the reference does), ``del``, ``only``/``no``, conditional blocks,
``suffix``, ``join`` and the file-name maps of an entry.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

from multihost_migration.cartesian.filters import Filter, Label

RESERVED = frozenset({"name", "shortname", "dep", "_short_name_map_file",
                      "_name_map_file"})


class Loc:
    """Where a statement came from: file, line, column (1-based) and the
    line's text."""

    __slots__ = ("filename", "line", "column", "text")

    def __init__(self, filename: str, line: int, column: int, text: str) -> None:
        self.filename = filename
        self.line = line
        self.column = column
        self.text = text

    def __repr__(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}"


class Line:
    """A line to read: its text (stripped), indentation, number, the
    column its text starts at in the file, and the file's line."""

    __slots__ = ("text", "indent", "number", "offset", "raw")

    def __init__(self, text: str, indent: int, number: int, offset: int,
                 raw: str) -> None:
        self.text = text
        self.indent = indent
        self.number = number
        self.offset = offset
        self.raw = raw


class Batch:
    """Plain ``key = value`` assignments with no ``${}``, merged: applied
    as one ``dict.update`` (the reference's "pre_dict").  Where each key
    is set is kept cheaply (`lines`, or the merged `parts`), for errors."""

    __slots__ = ("values", "loc", "lines", "parts")

    def __init__(self, values: dict[str, str], loc: Loc,
                 lines: Optional[dict[str, tuple[Line, int]]] = None,
                 parts: tuple["Batch", ...] = ()) -> None:
        self.values = values
        self.loc = loc
        self.lines = lines
        self.parts = parts

    def where(self, key: str) -> Optional[Loc]:
        """Where the batch sets `key` (its last assignment of it)."""
        for part in reversed(self.parts):
            found = part.where(key)
            if found is not None:
                return found
        if self.parts or key not in self.values:
            return None
        if self.lines is None or key not in self.lines:
            return self.loc
        line, pos = self.lines[key]
        return Loc(self.loc.filename, line.number, line.offset + pos + 1,
                   line.raw)


class Assign:
    """``key op value``; op is one of ``= += <= ~= ?= ?+= ?<=``."""

    __slots__ = ("op", "key", "value", "loc", "targets", "plain")

    def __init__(self, op: str, key: str, value: str, loc: Loc) -> None:
        self.op = op
        self.key = key
        self.value = value
        self.loc = loc
        # = += <= ~= of a non-reserved key, no ${} in the value
        self.plain = ("$" not in value and not op.startswith("?")
                      and key not in RESERVED)
        # ?= ?+= ?<=: every plain key the tree may set that the expression
        # matches (set by the expander)
        self.targets: Optional[tuple[str, ...]] = None


class Delete:
    """``del key``."""

    __slots__ = ("key", "loc")

    def __init__(self, key: str, loc: Loc) -> None:
        self.key = key
        self.loc = loc


class OnlyNo:
    """``only filter`` (keep=True) or ``no filter`` (keep=False)."""

    __slots__ = ("keep", "filter", "loc")

    def __init__(self, keep: bool, filter: Filter, loc: Loc) -> None:
        self.keep = keep
        self.filter = filter
        self.loc = loc


class Cond:
    """``filter:`` block (``!filter:`` when negative) and its statements."""

    __slots__ = ("negative", "filter", "body", "loc", "has_filters",
                 "has_join")

    def __init__(self, negative: bool, filter: Filter, loc: Loc) -> None:
        self.negative = negative
        self.filter = filter
        self.body: list[Item] = []
        self.loc = loc
        self.has_filters = False       # set by the expander
        self.has_join = False


class Suffix:
    """``suffix _x``: at the end of its block, every key gets the suffix."""

    __slots__ = ("suffix", "loc")

    def __init__(self, suffix: str, loc: Loc) -> None:
        self.suffix = suffix
        self.loc = loc


class Join:
    """``join f1 f2 ...``: the product of the dicts each filter selects."""

    __slots__ = ("filters", "loc")

    def __init__(self, filters: tuple[Filter, ...], loc: Loc) -> None:
        self.filters = filters
        self.loc = loc


class FileMap:
    """An entry's share of ``_name_map_file`` and ``_short_name_map_file``:
    the entry's name (and short name) under its file's base name."""

    __slots__ = ("file", "name", "short")

    def __init__(self, file: str, name: str, short: str) -> None:
        self.file = file
        self.name = name
        self.short = short


Item = Union[Batch, Assign, Delete, OnlyNo, Cond, Suffix, Join, FileMap]


class Lazy:
    """An entry's body not read yet (it is read when the expansion enters
    the entry, by `read`): the scope node its entries end on, and an index
    of the body made by a quick look at its lines: the keys of the labels
    its entries add (`keys`) and every name its filters may hold (`words`),
    both supersets, enough to tell that a filter cannot match below."""

    __slots__ = ("scope", "keys", "words", "read")

    def __init__(self, scope: "Node", keys: frozenset[str],
                 words: frozenset[str], read: Callable[["Node"], None]) -> None:
        self.scope = scope
        self.keys = keys
        self.words = words
        self.read = read


class Node:
    """One node of the variant tree."""

    __slots__ = ("labels", "var", "filename", "deps", "content", "children",
                 "append_to_shortname", "default", "lazy",
                 # computed by the expander
                 "info")

    def __init__(self, children: Optional[list["Node"]] = None) -> None:
        self.labels: tuple[Label, ...] = ()
        self.var: Optional[str] = None
        self.filename = ""
        self.deps: tuple[tuple[str, ...], ...] = ()  # dependency chains
        self.content: list[Item] = []
        self.children: list[Node] = children if children is not None else []
        self.append_to_shortname = False
        self.default = False
        # an entry whose body is not read yet: no content but its file map,
        # no children until `materialize`
        self.lazy: Optional[Lazy] = None
        self.info: object = None

    def materialize(self) -> None:
        """Read the body of a lazy entry (no-op for any other node)."""
        lazy = self.lazy
        if lazy is not None:
            self.lazy = None
            lazy.read(self)

    def __repr__(self) -> str:
        return f"Node({'.'.join(lb.text for lb in self.labels)!r})"
