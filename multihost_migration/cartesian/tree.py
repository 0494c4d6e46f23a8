"""The variant tree built from statements, and its expansion into dicts.

Shape: every ``variants`` block becomes a node whose children are its
entries; each entry's node has, as its only child, the node holding
everything parsed before the block in the same scope.  So the last
``variants`` block of a file is the root, a dict's name lists labels from
the outermost (last) block inwards, and applying the contents of a path
from the leaf up to the root applies statements in file order.

Filters are decided as early as the labels on the path and the labels the
subtree can still add allow (monotone matching), which prunes whole
subtrees; assignments are applied once, at the leaf.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Container, Iterator, Optional, Sequence, Union

from multihost_migration.cartesian import ops
from multihost_migration.cartesian.filters import Label
from multihost_migration.cartesian.syntax import (
    STRING_FILE, Assign, Cond, Delete, Join, Loc, OnlyNo, Stmt, Suffix,
    Variants)
from multihost_migration.errors import ConfigError, ConfigSyntaxError

log = logging.getLogger(__name__)

Item = Union[Assign, Delete, OnlyNo, Cond, Suffix, Join]


@dataclass(eq=False)
class Node:
    """One node of the variant tree."""

    labels: tuple[Label, ...] = ()         # an entry "a.b" has two
    at: bool = False
    default: bool = False
    deps: tuple[str, ...] = ()
    filename: str = STRING_FILE
    content: list[Item] = field(default_factory=list)
    children: list["Node"] = field(default_factory=list)
    below: frozenset[str] = frozenset()     # label keys the subtree adds
    filter_items: tuple[Item, ...] = ()     # content items with filters
    words: frozenset[str] = frozenset()     # filter words used in the subtree
    factors: tuple["Node", ...] = ()         # one copy per ``join`` filter


def build(stmts: Sequence[Stmt], node: Node, defaults: bool = False,
          expand_defaults: Sequence[str] = ()) -> Node:
    """Add statements to `node`; return the new scope root."""
    for stmt in stmts:
        if isinstance(stmt, Variants):
            node = _variants(stmt, node, defaults, expand_defaults)
        else:
            node.content.append(stmt)
    return node


def _variants(stmt: Variants, prev: Node, defaults: bool,
              expand_defaults: Sequence[str]) -> Node:
    container = Node(filename=stmt.loc.filename)
    default = stmt.meta.get("default")
    entries = stmt.entries
    if defaults and default is not None and stmt.var not in expand_defaults:
        entries = tuple(e for e in entries if e.name == default)
    for entry in entries:
        child = Node(children=[prev])
        if stmt.var is not None:
            child.content.append(Assign("=", stmt.var, entry.name, entry.loc))
        child = build(entry.body, child, defaults, expand_defaults)
        child.labels = tuple(Label(part, stmt.var)
                             for part in entry.name.split("."))
        child.at = entry.at
        child.default = entry.name == default
        child.deps = entry.deps
        child.filename = entry.loc.filename
        container.children.append(child)
    return container


def finish(root: Node) -> None:
    """Compute `below` and `filter_items` for every node (iteratively).

    The tree is a DAG (every entry of a block shares the previous scope as
    its child), so nodes are finished in true post-order: a node only after
    all of its children, however many parents reach them.
    """
    done: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in done:
            continue
        if not children_done:
            stack.append((node, True))
            stack.extend((c, False) for c in node.children if id(c) not in done)
            continue
        _finish_node(node)
        factors = _join_factors(node)
        for factor in factors:
            _finish_node(factor)
        if factors:
            node.factors = factors
            node.words = node.words.union(*(f.words for f in factors))
        done.add(id(node))


def _finish_node(node: Node) -> None:
    keys: set[str] = set()
    for child in node.children:
        keys |= child.below
        for label in child.labels:
            keys.add(label.name)
            keys.add(label.text)
    node.below = frozenset(keys)
    node.filter_items = tuple(i for i in node.content if _has_filter(i))
    words: set[str] = set()
    for child in node.children:
        words |= child.words
    for item in node.filter_items:
        words |= item_words(item)
    node.words = frozenset(words)


def _join_factors(node: Node) -> tuple[Node, ...]:
    """``join f1 f2`` in a node's content: the node once per filter, its
    content without the joins and with ``only f`` appended (how the
    reference expands a join); their dicts are multiplied."""
    joins = [i for i in node.content if isinstance(i, Join)]
    if not joins:
        return ()
    rest: list[Item] = [i for i in node.content if not isinstance(i, Join)]
    return tuple(
        Node(labels=node.labels, at=node.at, default=node.default,
             deps=node.deps, filename=node.filename,
             content=rest + [OnlyNo(True, f, join.loc)], children=node.children)
        for join in joins for f in join.filters)


def item_words(item: Item) -> frozenset[str]:
    """Keys of the filter words an item's decision depends on."""
    found: set[str] = set()
    if isinstance(item, (OnlyNo, Cond)):
        found.update(w.key for term in item.filter.terms
                     for chain in term for w in chain)
    if isinstance(item, Cond):
        for sub in item.body:
            found |= item_words(sub)  # type: ignore[arg-type]
    return frozenset(found)


def _has_filter(item: Item) -> bool:
    if isinstance(item, OnlyNo):
        return True
    if isinstance(item, Cond):
        return any(_has_filter(s) for s in item.body)  # type: ignore[arg-type]
    return False


def _cond_holds(cond: Cond, ctx: Sequence[Label], present: Container[str]) -> bool:
    return cond.filter.matches(ctx, present) != cond.negative


def _decide(items: Sequence[Item], ctx: Sequence[Label], present: Container[str],
            below: frozenset[str], out: list[Item], final: bool = False) -> bool:
    """Decide filter items for this context; undecided ones go to `out`.
    False if the subtree is excluded."""
    for item in items:
        if isinstance(item, OnlyNo):
            if item.filter.matches(ctx, present):
                if not item.keep:
                    return False
            elif not final and item.filter.might_match(present, below):
                out.append(item)
            elif item.keep:
                return False
        elif isinstance(item, Cond):
            matched = item.filter.matches(ctx, present)
            if not matched and not final and item.filter.might_match(present, below):
                out.append(item)
            elif matched != item.negative:
                inner = [s for s in item.body if _has_filter(s)]  # type: ignore[arg-type]
                if not _decide(inner, ctx, present, below, out, final):  # type: ignore[arg-type]
                    return False
    return True


@dataclass
class _Walk:
    labels: list[Label]
    path: list[Node]
    deps: list[str]
    present: dict[str, int] = field(default_factory=dict)  # names and texts

    def push(self, label: Label) -> None:
        self.labels.append(label)
        for key in (label.name, label.text) if label.var else (label.name,):
            self.present[key] = self.present.get(key, 0) + 1

    def pop(self) -> None:
        label = self.labels.pop()
        for key in (label.name, label.text) if label.var else (label.name,):
            left = self.present[key] - 1
            if left:
                self.present[key] = left
            else:
                del self.present[key]
    # (node, projected context, pending ids) -> (viable, undecided items)
    memo: dict[tuple[int, tuple[Optional[str], ...], tuple[int, ...]],
               tuple[bool, tuple[Item, ...]]] = field(default_factory=dict)
    pending_words: dict[tuple[int, ...], frozenset[str]] = field(default_factory=dict)

    def words_of(self, pending: tuple[Item, ...],
                 ids: tuple[int, ...]) -> frozenset[str]:
        found = self.pending_words.get(ids)
        if found is None:
            found = frozenset().union(*(item_words(i) for i in pending))
            self.pending_words[ids] = found
        return found


Raw = tuple[dict[ops.Key, object], bool]     # a dict, and if it has suffixes


def expand(root: Node) -> Iterator[dict[str, object]]:
    """Yield the dicts of the tree, in the reference parser's order."""
    walk = _Walk([], [], [])
    if _viable(root, walk, ()):
        for d, suffixed in _expand(root, walk, ()):
            yield ops.flatten(d) if suffixed else d  # type: ignore[misc]


def _project(labels: Sequence[Label], words: frozenset[str]) -> tuple[Optional[str], ...]:
    """The context as far as `words` can see it: other labels become one
    None per run (keeps adjacency for "a.b" chains)."""
    out: list[Optional[str]] = []
    for lb in labels:
        if lb.name in words or lb.text in words:
            out.append(lb.text)
        elif out and out[-1] is not None:
            out.append(None)
        elif not out:
            out.append(None)
    return tuple(out)


def _state(node: Node, walk: _Walk,
           pending: tuple[Item, ...]) -> tuple[bool, tuple[Item, ...]]:
    """Decide the filters at `node` (its label already on the context):
    whether its subtree yields anything, and what stays undecided."""
    ids = tuple(map(id, pending))
    words = node.words | walk.words_of(pending, ids) if pending else node.words
    key = (id(node), _project(walk.labels, words), ids)
    found = walk.memo.get(key)
    if found is not None:
        return found
    undecided: list[Item] = []
    final = not node.children      # at a leaf every filter is decided
    ok = (_decide(node.filter_items, walk.labels, walk.present, node.below,
                  undecided, final)
          and _decide(pending, walk.labels, walk.present, node.below,
                      undecided, final))
    state = tuple(undecided)
    if ok:
        if node.children:
            ok = any(_viable(child, walk, state) for child in node.children)
        else:
            assert not undecided
    walk.memo[key] = (ok, state)
    return ok, state


def _viable(node: Node, walk: _Walk, pending: tuple[Item, ...]) -> bool:
    if node.factors:
        return all(_viable(f, walk, pending) for f in node.factors)
    for label in node.labels:
        walk.push(label)
    try:
        return _state(node, walk, pending)[0]
    finally:
        for _ in node.labels:
            walk.pop()


def _expand(node: Node, walk: _Walk,
            pending: tuple[Item, ...]) -> Iterator[Raw]:
    """Walk a node known to be viable."""
    if node.factors:
        yield from _product([list(_expand(f, walk, pending))
                             for f in node.factors])
        return
    added_deps = 0
    for dep in node.deps:
        walk.deps.append(".".join([lb.text for lb in walk.labels] + [dep]))
        added_deps += 1
    for label in node.labels:
        walk.push(label)
    walk.path.append(node)
    try:
        ok, state = _state(node, walk, pending)
        assert ok
        if node.children:
            for child in node.children:
                if _viable(child, walk, state):
                    yield from _expand(child, walk, state)
        else:
            yield _make_dict(walk)
    finally:
        walk.path.pop()
        for _ in node.labels:
            walk.pop()
        del walk.deps[len(walk.deps) - added_deps:]


def _product(lists: Sequence[list[Raw]]) -> Iterator[Raw]:
    """The joined dicts: each of the first list's merged with each of the
    product of the rest (later dicts win; names merged by `merge_names`)."""
    if len(lists) == 1:
        yield from lists[0]
        return
    for d1, s1 in lists[0]:
        for d2, s2 in _product(lists[1:]):
            d = dict(d1)
            d.update(d2)
            d["name"] = merge_names(str(d1["name"]), str(d2["name"]))
            d["shortname"] = merge_names(str(d1["shortname"]),
                                         str(d2["shortname"]))
            yield d, s1 or s2


def merge_names(n1: str, n2: str) -> str:
    """The name of two joined dicts, as the reference builds it: their
    common prefix up to its last ``.``, then both remainders.  The prefix
    is used as a regular expression to cut it off (so a prefix holding
    ``(var=name)`` is not cut); names with no differing character are an
    error there, and here."""
    diff = next((i for i, (a, b) in enumerate(zip(n1, n2)) if a != b), None)
    if diff is None:
        raise ConfigError(f"join: cannot merge the names {n1!r} and {n2!r} "
                          "(one is a prefix of the other; the reference "
                          "parser fails on them too)")
    prefix = ".".join(n1[:diff].split(".")[:-1])
    if not prefix:
        return n1 + "." + n2
    try:
        cut = re.compile("^" + prefix)
    except re.error as err:
        raise ConfigError(f"join: cannot merge the names {n1!r} and "
                          f"{n2!r}: {err}") from err
    return prefix + cut.sub("", n1) + cut.sub("", n2)


def _make_dict(walk: _Walk) -> Raw:
    labeled = [n for n in walk.path if n.labels]
    names = [lb.text for lb in walk.labels]
    short = [lb.name for n in labeled if not n.at and not n.default
             for lb in n.labels]
    d: dict[str, object] = {"name": ".".join(names), "dep": list(walk.deps),
                            "shortname": ".".join(short)}
    name_map: dict[str, list[str]] = {}
    short_map: dict[str, list[str]] = {}
    for n in labeled:
        base = os.path.basename(n.filename)
        name_map.setdefault(base, []).extend(lb.text for lb in n.labels)
        short_map.setdefault(base, []).extend(lb.name for lb in n.labels)
    values: ops.Values = {}
    suffixed = False
    for node in reversed(walk.path):
        suffixed = _apply(node.content, values, walk.labels, walk.present,
                          suffixed)
    raw: dict[ops.Key, object] = {}
    raw.update(d)
    raw.update(values)
    if labeled:
        raw["_name_map_file"] = {k: ".".join(v) for k, v in name_map.items()}
        raw["_short_name_map_file"] = {k: ".".join(v)
                                       for k, v in short_map.items()}
    return raw, suffixed


def _apply(items: Sequence[Item], values: ops.Values, ctx: Sequence[Label],
           present: Container[str], suffixed: bool) -> bool:
    """Apply content items; return whether keys now carry suffixes."""
    for item in items:
        if isinstance(item, Assign):
            ops.assign(values, item.op, item.key, item.value, suffixed)
        elif isinstance(item, Cond):
            if _cond_holds(item, ctx, present):
                suffixed = _apply(item.body, values, ctx,  # type: ignore[arg-type]
                                  present, suffixed)
        elif isinstance(item, Delete):
            ops.delete(values, item.key, suffixed)
        elif isinstance(item, Suffix):
            ops.add_suffix(values, item.suffix)
            suffixed = True
        elif isinstance(item, Join):
            raise ConfigSyntaxError("join inside a filter block is not "
                                    "supported (nor by the reference parser)",
                                    item.loc.filename, item.loc.line, None,
                                    item.loc.text)
    return suffixed


def loc_of(item: Item) -> Loc:
    return item.loc
