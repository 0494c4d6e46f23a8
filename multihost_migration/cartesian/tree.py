"""Expansion of the variant tree (`model`) into dicts.

A dict is a path from the root to the leaf: its context is the labels of
the path, outermost first; it exists if every ``only``/``no`` on the path
(and in the conditional blocks that hold for it) passes; its keys are the
contents of the path applied from the leaf up, i.e. in file order.

How it is made fast:

* Filters are decided as early as the labels on the path and the labels
  the subtree can still add allow (matching is monotone), which prunes
  whole subtrees.  What is decided at a node depends only on the part of
  the context the undecided filters can see (its "signature"), so each
  (node, signature, undecided filters) is a `State`, computed once, with
  the list of its viable children's states: the dicts are the paths of
  this state graph, walked without deciding anything again.  (An entry's
  states are not looked up: its block, its only parent, asks once.)
* A lazy entry whose scope (where all of its body's paths end) is dead,
  by filters that see neither its labels nor its body's, is not read.
* Contents are applied once per dict; the leaf's (everything before the
  first ``variants`` block, usually the bulk: base.cfg) is applied once
  per signature of its conditional blocks and copied.
* Only what the expansion enters is read and prepared: an entry whose
  body is not read yet (`Node.lazy`, see `bodyscan`) has a summary Info
  from its body's index; when the pending filters cannot exclude it by
  that index, its body is read and its Info computed (`Graph.state`).
  The keys the ``?=`` expressions may match are those of the nodes read
  (`settle`): no dict holds any other.
"""

from __future__ import annotations

import bisect
from typing import AbstractSet, Any, Iterator, Optional, Sequence, Union

from multihost_migration.cartesian import ops
from multihost_migration.cartesian.filters import Filter, Label, label_keys
from multihost_migration.cartesian.model import (
    Assign, Batch, Cond, Delete, FileMap, Item, Join, Lazy, Loc, Node, OnlyNo,
    Suffix)
from multihost_migration.errors import ConfigError, ConfigSyntaxError

Raw = tuple[dict[ops.Key, Any], bool]     # a dict, and if it has suffixes
Sig = tuple[Optional[str], ...]

_RESERVED_REFS = tuple("${" + k + "}" for k in ops.RESERVED)


class Info:
    """What the expander precomputes for a node."""

    __slots__ = ("keys", "below", "filter_items", "words", "factors",
                 "break_on_default", "texts", "names", "filtered", "prog",
                 "cond_words", "plain", "has_cond", "fmap", "reads_maps",
                 "keyset", "dep_parts", "batch", "chain_filters", "resolved",
                 "sets")

    def __init__(self) -> None:
        self.keys: tuple[str, ...] = ()            # present-keys of labels
        self.below: frozenset[str] = frozenset()    # keys the subtree adds
        self.filter_items: tuple[Item, ...] = ()
        self.words: frozenset[str] = frozenset()    # filter words in subtree
        self.filtered = False                       # filters in subtree
        self.factors: tuple[Node, ...] = ()         # one per join filter
        self.break_on_default = False
        self.texts: tuple[str, ...] = ()            # label texts (names)
        self.names: tuple[str, ...] = ()            # label names (shortname)
        self.prog: tuple[Item, ...] = ()            # content that sets keys
        self.cond_words: frozenset[str] = frozenset()  # words of its conds
        self.plain = True           # content reads no reserved key
        self.reads_maps = False     # content reads the file maps
        self.has_cond = False       # prog holds conditional blocks
        self.fmap: Optional[FileMap] = None     # an entry's file map
        self.keyset: frozenset[str] = frozenset()
        self.dep_parts: tuple[str, ...] = ()    # the deps' chains, joined
        self.batch: Optional[dict[str, str]] = None  # prog is one Batch
        # the filters of its conditional blocks that need the labels'
        # order ("a.b"); None if one is broken (then nothing is cached)
        self.chain_filters: Optional[tuple[Filter, ...]] = ()
        # prog with its conditional blocks resolved, per context signature
        self.resolved: dict[Any, tuple[Item, ...]] = {}
        self.sets: frozenset[str] = frozenset()     # keys its content sets


def info(node: Node) -> Info:
    assert isinstance(node.info, Info)
    return node.info


class Options:
    """Parser options the expansion needs."""

    def __init__(self, defaults: bool = False,
                 expand_defaults: Sequence[str] = ()) -> None:
        self.defaults = defaults
        self.expand_defaults = tuple(expand_defaults)


# -- preparing the tree ---------------------------------------------------


class Prepared:
    """The options, and what the nodes the expansion entered set: keys
    ending in `ops.POSTFIXES`, whether a value reads the file maps."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.postfix_keys: frozenset[str] = frozenset()
        self.reads_maps = False


def finish(root: Node, options: Options) -> Prepared:
    """Prepare the tree for `expand`: the `Info` of every node read so
    far (a lazy entry gets a summary from its body's index)."""
    prepared = Prepared(options)
    prepare(root, prepared)
    return prepared


def prepare(root: Node, prepared: Prepared) -> None:
    """Compute the `Info` of `root` and of the nodes below it that have
    none (post-order over the DAG: a node after all of its children)."""
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if node.info is not None:
            continue
        lazy = node.lazy
        below = (lazy.scope,) if lazy is not None else node.children
        if not children_done:
            stack.append((node, True))
            stack.extend((c, False) for c in below if c.info is None)
        elif lazy is not None:
            node.info = _summary(node, lazy)
        else:
            _prepare_node(node, prepared.options)


def _summary(node: Node, lazy: Lazy) -> Info:
    """A lazy entry's Info as far as its parent needs it (supersets)."""
    result = Info()
    keys: list[str] = []
    for label in node.labels:
        keys.extend(label_keys(label))
    result.keys = tuple(keys)
    scope = info(lazy.scope)
    result.below = lazy.keys.union(scope.below, scope.keys)
    result.words = lazy.words | scope.words
    result.filtered = True
    return result


def _prepare_node(node: Node, options: Options) -> None:
    node.info = node_info = _info(node, node.content, options)
    joins = [i for i in node.content if isinstance(i, Join)]
    if not joins:
        return
    rest: list[Item] = [i for i in node.content if not isinstance(i, Join)]
    factors = []
    for join in joins:
        for f in join.filters:
            factor = Node(node.children)
            factor.labels = node.labels
            factor.var = node.var
            factor.filename = node.filename
            factor.deps = node.deps
            factor.append_to_shortname = node.append_to_shortname
            factor.default = node.default
            factor.content = rest + [OnlyNo(True, f, join.loc)]
            factor.info = _info(factor, factor.content, options)
            factors.append(factor)
    node_info.factors = tuple(factors)
    node_info.words = node_info.words.union(*(info(f).words for f in factors))
    node_info.filtered = True


def settle(root: Node, prepared: Prepared) -> None:
    """After the state graph is built: from the nodes read (all those the
    dicts are made of), every plain key they set (for the ``?=``-style
    assignments' targets), the postfix keys, whether a value reads the
    file maps."""
    nodes: list[Node] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen or node.lazy is not None or node.info is None:
            continue
        seen.add(id(node))
        nodes.append(node)
        nodes.extend(info(node).factors)
        stack.extend(node.children)
    keys: set[str] = set()
    for node in nodes:
        keys |= info(node).sets
    prepared.reads_maps = any(info(node).reads_maps for node in nodes)
    prepared.postfix_keys = frozenset(k for k in keys if k.endswith(ops.POSTFIXES))
    _set_targets(nodes, frozenset(k for k in keys if k not in ops.RESERVED))


_REGEX_META = frozenset(".^$*+?{}[]\\|()")


class _KeyIndex:
    """The keys a ``?=`` expression can match, found without trying the
    expression on every key of a large tree: a literal key matches itself
    only; otherwise only the keys that start with the expression's literal
    prefix are tried (a sorted list, bisected)."""

    def __init__(self, universe: frozenset[str]) -> None:
        self.universe = universe
        self.sorted = sorted(universe)

    def candidates(self, expression: str) -> Sequence[str]:
        cut = next((i for i, c in enumerate(expression) if c in _REGEX_META), None)
        if cut is None:
            return (expression,) if expression in self.universe else ()
        if expression[cut] in "?*{" and cut > 0:
            cut -= 1        # the character before is optional or repeated
        prefix = expression[:cut]
        if not prefix or "|" in expression:     # an alternation: any start
            return self.sorted
        start = bisect.bisect_left(self.sorted, prefix)
        end = bisect.bisect_left(self.sorted, prefix[:-1] + chr(ord(prefix[-1]) + 1))
        return self.sorted[start:end]


def _set_targets(nodes: Sequence[Node], universe: frozenset[str]) -> None:
    """For each ``?=``-style assignment: the keys of `universe` (every
    plain key the tree can set) its expression matches."""
    cache: dict[str, Optional[tuple[str, ...]]] = {}
    index = _KeyIndex(universe)

    def items(seq: Sequence[Item]) -> None:
        for item in seq:
            if isinstance(item, Assign) and item.op.startswith("?"):
                if item.key not in cache and _REGEX_META.isdisjoint(item.key):
                    cache[item.key] = tuple(index.candidates(item.key))  # literal: itself
                if item.key not in cache:
                    try:
                        match = ops.key_regex(item.key).match
                    except ConfigSyntaxError:
                        cache[item.key] = None      # fails when applied
                    else:
                        cache[item.key] = tuple(k for k in index.candidates(item.key)
                                                if match(k))
                item.targets = cache[item.key]
            elif isinstance(item, Cond):
                items(item.body)

    for node in nodes:
        items(node.content)


class _Facts:
    """What one scan of a content list (conditional blocks included)
    finds: the keys it may set, its conditional blocks' words and the
    filters of theirs that need the labels' order (None: one is broken),
    whether it reads reserved keys or the file maps."""

    __slots__ = ("keys", "cond_words", "chains", "reads_reserved",
                 "reads_maps", "filters", "joins")

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.cond_words: set[str] = set()
        self.chains: Optional[list[Filter]] = []
        self.reads_reserved = False
        self.reads_maps = False
        self.filters = False        # only/no, or a block holding one
        self.joins = False


def _scan(items: Sequence[Item], facts: _Facts) -> None:
    """Fill `facts`; set each conditional block's has_filters/has_join."""
    for item in items:
        kind = type(item)
        if kind is Batch:
            facts.keys.update(item.values)  # type: ignore[union-attr]
        elif kind is Assign:
            assert isinstance(item, Assign)
            facts.keys.add(item.key)
            value = item.value
            if "${" in value:
                if any(ref in value for ref in _RESERVED_REFS):
                    facts.reads_reserved = True
                if any(ref in value for ref in _MAP_REFS):
                    facts.reads_maps = True
        elif kind is Cond:
            assert isinstance(item, Cond)
            f = item.filter
            facts.cond_words |= f.words
            inner = _Facts()
            _scan(item.body, inner)
            item.has_filters = f.broken is not None or inner.filters
            item.has_join = inner.joins
            facts.filters = facts.filters or item.has_filters
            facts.joins = facts.joins or item.has_join
            facts.keys |= inner.keys
            facts.cond_words |= inner.cond_words
            facts.reads_reserved = facts.reads_reserved or inner.reads_reserved
            facts.reads_maps = facts.reads_maps or inner.reads_maps
            if (f.broken is not None or inner.chains is None
                    or facts.chains is None):
                facts.chains = None
            else:
                if any(len(chain) > 1 for term in f.terms for chain in term):
                    facts.chains.append(f)
                facts.chains.extend(inner.chains)
        elif kind is OnlyNo:
            facts.filters = True
        elif kind is Join:
            facts.joins = True


def _is_filter_item(item: Item) -> bool:
    return isinstance(item, OnlyNo) or (
        isinstance(item, Cond) and (item.has_filters or item.has_join))


_MAP_REFS = ("${_name_map_file}", "${_short_name_map_file}")


def _compact(items: Sequence[Item]) -> tuple[Item, ...]:
    """The items that set keys, runs of plain assignments merged into one
    `Batch` (same keys, values and key order as applying them in turn)."""
    out: list[Item] = []
    run: list[Union[Batch, Assign]] = []

    def end_run() -> None:
        if len(run) == 1 and isinstance(run[0], Batch):
            out.append(run[0])
        elif run:
            values: dict[str, str] = {}
            parts = []
            for part in run:
                if isinstance(part, Batch):
                    values.update(part.values)
                    parts.append(part)
                else:
                    values[part.key] = part.value
                    parts.append(Batch({part.key: part.value}, part.loc))
            out.append(Batch(values, run[0].loc, parts=tuple(parts)))
        run.clear()

    for item in items:
        if isinstance(item, (OnlyNo, Join)):
            continue
        if isinstance(item, Batch) or (
                isinstance(item, Assign) and item.op == "="
                and "$" not in item.value and item.key not in ops.RESERVED):
            run.append(item)
            continue
        end_run()
        if isinstance(item, Cond):
            body = _compact(item.body)
            if len(body) != len(item.body) or any(
                    a is not b for a, b in zip(body, item.body)):
                merged = Cond(item.negative, item.filter, item.loc)
                merged.body = list(body)
                merged.has_filters = item.has_filters
                merged.has_join = item.has_join
                item = merged
        out.append(item)
    end_run()
    return tuple(out)


def _info(node: Node, content: Sequence[Item], options: Options) -> Info:
    result = Info()
    facts = _Facts()
    _scan(content, facts)
    if node.var is not None:
        facts.keys.add(node.var)
    result.sets = frozenset(facts.keys)
    keys: list[str] = []
    for label in node.labels:
        keys.extend(label_keys(label))
    result.keys = tuple(keys)
    result.texts = tuple(lb.text for lb in node.labels)
    result.names = tuple(lb.name for lb in node.labels)
    below: set[str] = set()
    words: set[str] = set()
    filtered = False
    for child in node.children:
        child_info = info(child)
        filtered = filtered or child_info.filtered
        below |= child_info.below
        below.update(child_info.keys)
        words |= child_info.words
    result.below = frozenset(below)
    result.filter_items = tuple(i for i in content if _is_filter_item(i))
    for item in result.filter_items:
        words |= item_words(item)
    result.words = frozenset(words)
    result.filtered = filtered or bool(result.filter_items)
    result.break_on_default = (options.defaults
                               and node.var not in options.expand_defaults)
    prog = [i for i in content if not isinstance(i, (OnlyNo, Join))]
    last = prog[-1] if prog else None
    if isinstance(last, FileMap):
        result.fmap = last
        prog.pop()
    elif any(isinstance(i, FileMap) for i in prog):   # pragma: no cover
        raise AssertionError("a file map must end its entry's content")
    result.prog = _compact(prog)
    result.cond_words = frozenset(facts.cond_words)
    result.plain = not facts.reads_reserved
    result.reads_maps = facts.reads_maps
    result.has_cond = any(isinstance(i, Cond) for i in result.prog)
    result.keyset = frozenset(keys)
    result.dep_parts = tuple(".".join(dep) for dep in node.deps)
    if len(result.prog) == 1 and isinstance(result.prog[0], Batch):
        result.batch = result.prog[0].values
    result.chain_filters = (tuple(facts.chains) if facts.chains is not None
                            else None)
    return result


def item_words(item: Item) -> frozenset[str]:
    """Keys of the filter words an item's decision depends on."""
    found: set[str] = set()
    if isinstance(item, (OnlyNo, Cond)):
        found |= item.filter.words
    if isinstance(item, Cond):
        for sub in item.body:
            found |= item_words(sub)
    return frozenset(found)


def _cond_holds(item: Cond, labels: Sequence[Label], present: AbstractSet[str]) -> bool:
    """Whether a conditional block (`f:` / `!f:`) applies to the dict being
    built; a join inside one that applies is an error."""
    anyof = item.filter.anyof
    hit = (not anyof.isdisjoint(present) if anyof is not None
           else item.filter.matches(labels, present))
    if hit == item.negative:
        return False
    if item.has_join:
        raise _join_in_cond(item)
    return True


def _resolve(items: Sequence[Item], labels: Sequence[Label],
             present: AbstractSet[str], out: list[Item]) -> None:
    """`items` with the conditional blocks that hold replaced by their
    (resolved) contents, the others dropped, into `out`."""
    for item in items:
        if type(item) is Cond:
            assert isinstance(item, Cond)
            if _cond_holds(item, labels, present):
                _resolve(item.body, labels, present, out)
        elif type(item) is Batch and out and type(out[-1]) is Batch:
            last = out[-1]
            assert isinstance(last, Batch) and isinstance(item, Batch)
            merged = dict(last.values)
            merged.update(item.values)
            out[-1] = Batch(merged, last.loc,
                            parts=(last.parts or (last,)) + (item.parts or (item,)))
        else:
            out.append(item)


def resolved(node_info: Info, labels: Sequence[Label],
             present: AbstractSet[str]) -> tuple[Item, ...]:
    """The node's prog for this context, conditional blocks resolved,
    cached on what decides them: the labels among their filters' words
    and the results of the filters that need the labels' order."""
    chains = node_info.chain_filters
    if chains is None:
        out: list[Item] = []
        _resolve(node_info.prog, labels, present, out)
        return tuple(out)
    key = (present & node_info.cond_words,
           tuple(f.matches(labels, present) for f in chains) if chains else ())
    found = node_info.resolved.get(key)
    if found is None:
        out = []
        _resolve(node_info.prog, labels, present, out)
        found = tuple(out)
        if len(node_info.resolved) >= 256:
            node_info.resolved.clear()
        node_info.resolved[key] = found
    return found


# -- the state graph --------------------------------------------------------


class State:
    """A node reached with a given signature of its context and given
    undecided filters: whether it yields anything, and its children's
    states (the viable ones, in order) or its join factors' states."""

    __slots__ = ("node", "viable", "phantom", "kids", "factors", "loc")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.viable = False
        # yields nothing, but the reference builds (and drops) dicts in it:
        # a join whose first factors yield and a later one not
        self.phantom = False
        self.kids: tuple[State, ...] = ()
        self.factors: tuple[State, ...] = ()
        self.loc: Optional[Loc] = None      # a join's


_DEAD = State(Node())       # a state that yields nothing


class Graph:
    """Builds the states; holds the context of the node being decided."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        self.labels: list[Label] = []
        self.present: dict[str, int] = {}
        self.memo: dict[tuple[Any, ...], State] = {}
        self.pending_words: dict[tuple[Item, ...], frozenset[str]] = {}
        self.unions: dict[tuple[Info, tuple[Item, ...]], frozenset[str]] = {}
        self.only_words: dict[tuple[Item, ...], tuple[frozenset[str], ...]] = {}

    def push(self, node_info: Info, labels: Sequence[Label]) -> None:
        self.labels.extend(labels)
        present = self.present
        for key in node_info.keys:
            present[key] = present.get(key, 0) + 1

    def pop(self, node_info: Info, labels: Sequence[Label]) -> None:
        if labels:
            del self.labels[len(self.labels) - len(labels):]
        present = self.present
        for key in node_info.keys:
            left = present[key] - 1
            if left:
                present[key] = left
            else:
                del present[key]

    def words_of(self, pending: tuple[Item, ...]) -> frozenset[str]:
        found = self.pending_words.get(pending)
        if found is None:
            found = frozenset().union(*(item_words(i) for i in pending))
            self.pending_words[pending] = found
        return found

    def _words(self, node_info: Info, pending: tuple[Item, ...]) -> frozenset[str]:
        """The words that decide below a node (made once per pending)."""
        if not pending:
            return node_info.words
        found = self.unions.get((node_info, pending))
        if found is None:
            found = self.unions[(node_info, pending)] = (
                node_info.words | self.words_of(pending))
        return found

    def state(self, node: Node, pending: tuple[Item, ...]) -> State:
        """The state of `node` (its labels not yet on the context); a
        lazy entry is read first, unless a pending filter excludes it."""
        node_info = info(node)
        lazy = node.lazy
        if lazy is not None:
            if pending and self._excluded(node, node_info, pending):
                return _DEAD
            if self._scope_dead(node, node_info, lazy, pending):
                return _DEAD
            node.materialize()
            node.info = None
            prepare(node, self.prepared)
            node_info = info(node)
        self.push(node_info, node.labels)
        try:
            if node_info.factors:
                return self._join_state(node, node_info, pending)
            return self._state(node, node_info, pending)
        finally:
            self.pop(node_info, node.labels)

    def _excluded(self, node: Node, node_info: Info,
                  pending: tuple[Item, ...]) -> bool:
        """Whether the pending filters exclude a lazy entry, by its index
        (an error is left for the entry's reading to raise, in order).
        First the cheap test: an ``only`` of single words none of which
        the context or the entry's subtree holds (``only migrate`` at the
        entries of the tests block: met for thousands of them)."""
        for anyof in self._only_words(pending):
            if (anyof.isdisjoint(self.present) and anyof.isdisjoint(node_info.below)
                    and anyof.isdisjoint(node_info.keys)):
                return True
        self.push(node_info, node.labels)
        try:
            return not _decide(pending, self.labels, self.present.keys(),
                               node_info.below, [], False)
        except ConfigError:
            return False
        finally:
            self.pop(node_info, node.labels)

    def _scope_dead(self, node: Node, node_info: Info, lazy: Lazy,
                    pending: tuple[Item, ...]) -> bool:
        """Whether every path through a lazy entry dies below it, told
        without reading its body.  The paths all end on its scope; when
        what decides from there down (the pending filters, the scope's
        subtree) sees neither the entry's labels nor its body's, the
        scope's state is the one every path meets, and the body can only
        add filters: a dead scope (no join below) makes the entry dead.
        An error is left for the entry's reading to raise, in order."""
        scope = lazy.scope
        words = self._words(info(scope), pending)
        if not (words.isdisjoint(node_info.keys) and words.isdisjoint(lazy.keys)):
            return False
        self.push(node_info, node.labels)
        try:
            return self.state(scope, pending) is _DEAD
        except ConfigError:
            return False
        finally:
            self.pop(node_info, node.labels)

    def _only_words(self, pending: tuple[Item, ...]) -> tuple[frozenset[str], ...]:
        """The words of the pending ``only`` filters of single words."""
        found = self.only_words.get(pending)
        if found is None:
            found = self.only_words[pending] = tuple(
                i.filter.anyof for i in pending if isinstance(i, OnlyNo) and i.keep
                and i.filter.anyof is not None and i.filter.broken is None)
        return found

    def _join_state(self, node: Node, node_info: Info,
                    pending: tuple[Item, ...]) -> State:
        key = self._key(node, node_info, pending)
        found = self.memo.get(key)
        if found is not None:
            return found
        state = State(node)
        state.loc = next(i.loc for i in node.content if isinstance(i, Join))
        factors = []
        for factor in node_info.factors:
            factor_state = self._state(factor, info(factor), pending)
            factors.append(factor_state)
            if not factor_state.viable:
                break       # the reference looks no further either
        state.factors = tuple(factors)
        state.viable = all(f.viable for f in factors)
        state.phantom = not state.viable and (len(factors) > 1
                                              or factors[-1].phantom)
        self.memo[key] = state
        return state

    def _key(self, node: Node, node_info: Info,
             pending: tuple[Item, ...]) -> tuple[Any, ...]:
        if not pending and not node_info.filtered:
            return (node,)
        return (node, _project(self.labels, self._words(node_info, pending)),
                pending)

    def _state(self, node: Node, node_info: Info,
               pending: tuple[Item, ...]) -> State:
        # an entry (labels) has one parent: its states are not shared
        key = None if node.labels else self._key(node, node_info, pending)
        if key is not None:
            found = self.memo.get(key)
            if found is not None:
                return found
        state = State(node)
        undecided: list[Item] = []
        children = node.children
        final = not children        # at the leaf every filter is decided
        present = self.present.keys()
        ok = (_decide(node_info.filter_items, self.labels, present,
                      node_info.below, undecided, final)
              and _decide(pending, self.labels, present, node_info.below,
                          undecided, final))
        if ok and children:
            out = tuple(undecided)
            kids = []
            viable = phantom = False
            for child in children:
                kid = self.state(child, out)
                if kid.viable:
                    kids.append(kid)
                    viable = True
                    if (node_info.break_on_default and child.default
                            and child is children[0]):
                        break       # defaults: the default entry only
                elif kid.phantom:
                    kids.append(kid)
                    phantom = True
            state.kids = tuple(kids)
            ok = viable
            state.phantom = phantom and not viable
        state.viable = ok
        if not ok and not state.phantom:
            state = _DEAD           # one object for all: there are many
        if key is not None:
            self.memo[key] = state
        return state


def _project(labels: Sequence[Label], words: frozenset[str]) -> Sig:
    """The context as far as `words` can see it: other labels become one
    None per run (keeps adjacency for "a.b" chains)."""
    out: list[Optional[str]] = []
    for lb in labels:
        if lb.name in words or lb.text in words:
            out.append(lb.text)
        elif not out or out[-1] is not None:
            out.append(None)
    return tuple(out)


def _decide(items: Sequence[Item], ctx: Sequence[Label], present: AbstractSet[str],
            below: frozenset[str], out: list[Item], final: bool) -> bool:
    """Decide filter items for this context; undecided ones go to `out`.
    False if the subtree is excluded."""
    for item in items:
        if isinstance(item, OnlyNo):
            if item.filter.matches(ctx, present):
                if not item.keep:
                    return False
            elif not final and item.filter.might_match(ctx, present, below):
                out.append(item)
            elif item.keep:
                return False
        elif isinstance(item, Cond):
            if item.filter.matches(ctx, present):
                holds = not item.negative
            elif not final and item.filter.might_match(ctx, present, below):
                out.append(item)
                continue
            else:
                holds = item.negative
            if holds:
                inner = [s for s in item.body
                         if _is_filter_item(s) or isinstance(s, Join)]
                if not _decide(inner, ctx, present, below, out, final):
                    return False
        elif isinstance(item, Join):
            # the reference fails on a join it meets in a conditional block
            raise ConfigSyntaxError("join inside a conditional block is not "
                                    "supported (nor by the reference parser)",
                                    item.loc.filename, item.loc.line,
                                    item.loc.column, item.loc.text)
    return True


def _join_in_cond(cond: Cond) -> ConfigSyntaxError:
    loc = cond.loc
    return ConfigSyntaxError("join inside a conditional block is not "
                             "supported (nor by the reference parser)",
                             loc.filename, loc.line, loc.column, loc.text)


# -- walking the states -----------------------------------------------------


class Segment:
    """A chain of states, each the only child of the one before (no join
    on the way): what entering all of them adds to the walk's path."""

    __slots__ = ("last", "node", "inert", "labels", "keyset", "text",
                 "short", "deps", "piece", "actives", "fmaps")

    def __init__(self, states: Sequence[State], walk: "Walk") -> None:
        self.last = states[-1]
        self.node = self.last.node
        labels: list[Label] = []
        keys: set[str] = set()
        texts: list[str] = []
        shorts: list[str] = []
        deps: list[tuple[str, str]] = []
        actives: list[Info] = []
        fmaps: list[FileMap] = []
        piece: list[Optional[str]] = []
        for state in states:
            node = state.node
            node_info = info(node)
            for part in node_info.dep_parts:
                deps.append((".".join(texts), part))
            if node.labels:
                labels.extend(node.labels)
                keys.update(node_info.keyset)
                texts.extend(node_info.texts)
                if node.append_to_shortname:
                    shorts.extend(node_info.names)
                if walk.leaf_words:
                    for p in _project(node.labels, walk.leaf_words):
                        if p is not None or not piece or piece[-1] is not None:
                            piece.append(p)
            if node_info.fmap is not None:
                actives.append(node_info)
                fmaps.append(node_info.fmap)
            elif node_info.prog and not (node is walk.leaf
                                         and walk.leaf_cache is not None):
                actives.append(node_info)
        self.labels = tuple(labels)
        self.keyset = frozenset(keys)
        self.text = ".".join(texts)
        self.short = ".".join(shorts)
        self.deps = tuple(deps)
        self.piece: Sig = tuple(piece)
        self.actives = tuple(actives)
        self.fmaps = tuple(fmaps)
        self.inert = not (labels or deps or actives or fmaps
                          or node is walk.leaf)


class Frame:
    """The walk's path down to a segment, and what the path makes."""

    __slots__ = ("node", "name", "short", "deps", "present", "labels",
                 "lsig", "actives", "fmaps", "parent", "seg", "maps")

    def __init__(self, node: Optional[Node], parent: Optional["Frame"] = None,
                 seg: Optional[Segment] = None) -> None:
        self.node = node
        self.parent = parent
        self.seg = seg
        # the file maps (names, short names) once made: see Walk.maps
        self.maps: Optional[tuple[dict[str, str], dict[str, str]]] = None
        self.name = ""
        self.short = ""
        self.deps: tuple[str, ...] = ()
        self.present: frozenset[str] = frozenset()
        self.labels: tuple[Label, ...] = ()
        self.lsig: Sig = ()                 # the context's leaf signature
        self.actives: tuple[Info, ...] = ()     # nodes with contents
        self.fmaps: tuple[FileMap, ...] = ()    # file maps, outer first


class Walk:
    """The path of the walk over the state graph, and the dict maker."""

    def __init__(self, leaf: Node, prepared: Prepared) -> None:
        self.frames = [Frame(None)]
        self.postfix_keys = prepared.postfix_keys
        self.sequential_maps = prepared.reads_maps
        self.leaf = leaf
        leaf_info = info(leaf)
        self.leaf_prog = leaf_info.prog
        self.leaf_words = leaf_info.cond_words
        self.leaf_cache: Optional[dict[Sig, Raw]] = (
            {} if leaf_info.plain and leaf_info.prog else None)
        self.segments: dict[int, Segment] = {}

    def segment(self, state: State) -> Segment:
        """The segment starting at a (join-free) state."""
        found = self.segments.get(id(state))
        if found is None:
            chain = [state]
            while len(state.kids) == 1 and not state.kids[0].factors:
                state = state.kids[0]
                chain.append(state)
            found = self.segments[id(chain[0])] = Segment(chain, self)
        return found

    def enter(self, seg: Segment) -> None:
        parent = self.frames[-1]
        if seg.inert:
            self.frames.append(parent)
            return
        frame = Frame(seg.node, parent, seg)
        name = parent.name
        if seg.deps:
            new = []
            for prefix, part in seg.deps:
                ctx = f"{name}.{prefix}" if name and prefix else name or prefix
                new.append(f"{ctx}.{part}" if ctx and part else ctx or part)
            frame.deps = parent.deps + tuple(new)
        else:
            frame.deps = parent.deps
        if seg.labels:
            text = seg.text
            frame.name = f"{name}.{text}" if name else text
            short = seg.short
            if short:
                frame.short = (f"{parent.short}.{short}" if parent.short
                               else short)
            else:
                frame.short = parent.short
            frame.present = parent.present | seg.keyset
            frame.labels = parent.labels + seg.labels
            piece = seg.piece
            lsig = parent.lsig
            if piece and lsig and lsig[-1] is None and piece[0] is None:
                piece = piece[1:]
            frame.lsig = lsig + piece
        else:
            frame.name = name
            frame.short = parent.short
            frame.present = parent.present
            frame.labels = parent.labels
            frame.lsig = parent.lsig
        frame.actives = (parent.actives + seg.actives if seg.actives
                         else parent.actives)
        frame.fmaps = parent.fmaps + seg.fmaps if seg.fmaps else parent.fmaps
        self.frames.append(frame)

    def leave(self) -> None:
        self.frames.pop()

    def maps(self, frame: Frame) -> tuple[dict[str, str], dict[str, str]]:
        """The file maps of the path down to `frame`, as the entries' maps
        make them (innermost entry first): per file, the names outer
        first, the files in the order the innermost entries meet them.
        Made once per frame, from its parent's."""
        if frame.maps is not None:
            return frame.maps
        if frame.parent is None or frame.seg is None:
            frame.maps = ({}, {})
            return frame.maps
        names, shorts = self.maps(frame.parent)
        for fmap in frame.seg.fmaps:            # outer first
            file = fmap.file
            old = names.get(file)
            if old is None:
                names = {file: fmap.name, **names}
                shorts = {file: fmap.short, **shorts}
            else:
                names = {file: f"{old}.{fmap.name}",
                         **{f: v for f, v in names.items() if f != file}}
                shorts = {file: f"{shorts[file]}.{fmap.short}",
                          **{f: v for f, v in shorts.items() if f != file}}
        frame.maps = (names, shorts)
        return frame.maps

    def walk(self, state: State) -> Iterator[Raw]:
        """The dicts of a viable state's subtree, in the reference's order."""
        if not state.viable and not state.phantom:
            return
        if state.factors:
            lists = [list(self.walk(f)) for f in state.factors]
            try:
                yield from _product(lists)
            except ConfigError as err:
                if err.filename is not None or state.loc is None:
                    raise
                loc = state.loc
                raise ConfigSyntaxError(err.message, loc.filename, loc.line,
                                        loc.column, loc.text) from None
            return
        seg = self.segment(state)
        self.enter(seg)
        if not seg.last.kids:
            yield self.make_dict()
            self.leave()
            return
        stack = [iter(seg.last.kids)]
        enter = self.enter
        leave = self.leave
        make_dict = self.make_dict
        segment = self.segment
        while stack:
            kid = next(stack[-1], None)
            if kid is None:
                stack.pop()
                leave()
            elif kid.factors:
                yield from self.walk(kid)
            else:
                seg = segment(kid)
                enter(seg)
                kids = seg.last.kids
                if kids:
                    stack.append(iter(kids))
                else:
                    yield make_dict()
                    leave()

    def make_dict(self) -> Raw:
        frame = self.frames[-1]
        labels = frame.labels
        present = frame.present
        d: dict[ops.Key, Any]
        if frame.node is self.leaf and self.leaf_cache is not None:
            sig = frame.lsig
            cached = self.leaf_cache.get(sig)
            if cached is None:
                d = {"name": "", "dep": [], "shortname": ""}
                suffixed = _apply(self.leaf_prog, d, labels, present, False)
                if len(self.leaf_cache) >= 512:
                    self.leaf_cache.clear()
                cached = self.leaf_cache[sig] = (d, suffixed)
            d = cached[0].copy()
            suffixed = cached[1]
            d["name"] = frame.name
            d["dep"] = list(frame.deps)
            d["shortname"] = frame.short
        else:
            d = {"name": frame.name, "dep": list(frame.deps),
                 "shortname": frame.short}
            suffixed = False
        mapped = False
        sequential = self.sequential_maps
        for node_info in reversed(frame.actives):
            batch = node_info.batch
            if batch is not None:
                d.update(batch)
            elif node_info.prog:
                items = (resolved(node_info, labels, present)
                         if node_info.has_cond else node_info.prog)
                if len(items) == 1 and type(items[0]) is Batch:
                    d.update(items[0].values)
                else:
                    suffixed = _apply(items, d, labels, present, suffixed)
            fmap = node_info.fmap
            if fmap is not None:
                if sequential:
                    ops.add_file_map(d, fmap.file, fmap.name, fmap.short)
                elif not mapped:
                    # the maps' place; filled in once they are complete
                    d["_name_map_file"] = d["_short_name_map_file"] = None
                    mapped = True
        if mapped:
            names, shorts = self.maps(frame)
            d["_name_map_file"] = dict(names)
            d["_short_name_map_file"] = dict(shorts)
        if self.postfix_keys:
            try:
                ops.postfix_parse(d, self.postfix_keys)
            except ops.PostfixError as err:
                loc = self._where_set(err.key)
                if loc is None:         # pragma: no cover - a key is set
                    raise
                raise ConfigSyntaxError(err.message, loc.filename, loc.line,
                                        loc.column, loc.text) from None
        return d, suffixed

    def _where_set(self, key: str) -> Optional[Loc]:
        """Where the path last sets `key` (for an error about its value)."""
        found: Optional[Loc] = None

        def scan(items: Sequence[Item]) -> None:
            nonlocal found
            for item in items:
                if isinstance(item, Batch) and key in item.values:
                    found = item.where(key) or found
                elif isinstance(item, Assign) and item.key == key:
                    found = item.loc
                elif isinstance(item, Cond):
                    scan(item.body)

        frame = self.frames[-1]
        if frame.node is self.leaf:
            scan(self.leaf_prog)
        for node_info in reversed(frame.actives):
            scan(node_info.prog)
        return found


def expand(root: Node, prepared: Prepared,
           flatten: bool = True) -> Iterator[dict[ops.Key, Any]]:
    """Yield the dicts of the tree, in the reference parser's order."""
    graph = Graph(prepared)
    state = graph.state(root, ())
    if not state.viable and not state.phantom:
        return
    settle(root, prepared)
    leaf = root
    while leaf.children or leaf.lazy is not None:
        leaf = leaf.lazy.scope if leaf.lazy is not None else leaf.children[0]
    walk = Walk(leaf, prepared)
    for d, suffixed in walk.walk(state):
        yield ops.drop_suffixes(d) if suffixed and flatten else d


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
            d["name"] = ops.merge_names(str(d1["name"]), str(d2["name"]))
            d["shortname"] = ops.merge_names(str(d1["shortname"]),
                                             str(d2["shortname"]))
            yield d, s1 or s2


def _apply(items: Sequence[Item], d: dict[ops.Key, Any], labels: Sequence[Label],
           present: AbstractSet[str], suffixed: bool) -> bool:
    """Apply content items; return whether keys now carry suffixes."""
    for item in items:
        kind = type(item)
        if kind is Batch:
            d.update(item.values)  # type: ignore[union-attr]
            continue
        try:
            if kind is Assign:
                assert isinstance(item, Assign)
                if item.plain:
                    op = item.op
                    key = item.key
                    if op == "+=":
                        d[key] = d.get(key, "") + item.value
                    elif op == "<=":
                        d[key] = item.value + d.get(key, "")
                    elif op == "=":
                        d[key] = item.value
                    elif key not in d:      # ~=
                        d[key] = item.value
                    continue
                targets = item.targets
                if targets is not None and not suffixed:
                    ops.assign_targets(d, item.op, targets, item.value)
                else:
                    ops.assign(d, item.op, item.key, item.value, suffixed)
            elif kind is Cond:
                assert isinstance(item, Cond)
                if _cond_holds(item, labels, present):
                    suffixed = _apply(item.body, d, labels, present, suffixed)
            elif kind is Delete:
                assert isinstance(item, Delete)
                ops.delete(d, item.key, suffixed)
            elif kind is Suffix:
                assert isinstance(item, Suffix)
                ops.add_suffix(d, item.suffix)
                suffixed = True
        except ConfigSyntaxError as err:
            if err.filename is not None or isinstance(item, FileMap):
                raise
            loc = item.loc
            raise ConfigSyntaxError(err.message, loc.filename, loc.line,
                                    loc.column, loc.text) from None
    return suffixed
