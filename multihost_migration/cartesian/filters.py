"""Filter expressions of the Cartesian format and their matching.

A filter selects dicts by the names of the variants that make them up::

    qcow2..(guest_os=Fedora).14, RHEL.6..raw

``,`` (or whitespace after ``only``/``no``/``join``) separates
alternatives (OR), ``..`` joins chains that must all be present (AND, in
any order), ``.`` means "immediately followed by" and ``(var=name)`` names
a child of a named ``variants var:`` block.

A dict's context is the ordered tuple of its variant labels, outermost
first.  Matching is monotone: a filter that matches a context also matches
every extension of it, which lets the expander decide filters early.
"""

from __future__ import annotations

from typing import AbstractSet, Container, Optional, Sequence


class Label:
    """One element of a dict's context: a variant's name and its variants
    block's name (None for an unnamed ``variants:`` block).  Immutable;
    `text` is the label as it appears in a dict's ``name``."""

    __slots__ = ("name", "var", "text")

    def __init__(self, name: str, var: Optional[str] = None) -> None:
        self.name = name
        self.var = var
        self.text = name if var is None else f"({var}={name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Label) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Label({self.text!r})"


class Word:
    """One filter word: ``name`` or ``(var=name)``.  `key` is what a
    context's `present` set holds for a label it matches."""

    __slots__ = ("name", "var", "key")

    def __init__(self, name: str, var: Optional[str] = None) -> None:
        self.name = name
        self.var = var
        self.key = name if var is None else f"({var}={name})"

    def matches(self, label: Label) -> bool:
        if label.name != self.name:
            return False
        return self.var is None or label.var == self.var

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Word) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return self.key


Chain = tuple[Word, ...]        # words joined by "." (adjacent, in order)
Term = tuple[Chain, ...]        # chains joined by ".." (all present)


def label_keys(label: Label) -> tuple[str, ...]:
    """The keys a label puts into a context's `present` set."""
    return (label.name,) if label.var is None else (label.name, label.text)


def _chain_matches(chain: Chain, ctx: Sequence[Label]) -> bool:
    n = len(chain)
    first = chain[0]
    for start in range(len(ctx) - n + 1):
        if first.matches(ctx[start]) and all(
                chain[i].matches(ctx[start + i]) for i in range(1, n)):
            return True
    return False


def _match_adjacent(chain: Chain, ctx: Sequence[Label],
                    present: Container[str]) -> int:
    """How much of the chain the reference counts as matched in the context
    (its ``_match_adjacent``, with the same shortcuts): the whole chain if
    it occurs, else the part matched at the end, or where its scan
    stopped."""
    first = chain[0]
    if first.key not in present:
        return 0
    n = len(chain)
    if n == 1:
        return 1
    if chain[1].key not in present:
        return 1 if first.matches(ctx[-1]) else 0
    i = 0
    while not first.matches(ctx[i]):
        i += 1
    k = 0
    length = len(ctx)
    while i < length:
        if k > 0 and not chain[k].matches(ctx[i]):
            i -= k - 1
            k = 0
        if chain[k].matches(ctx[i]):
            k += 1
            if k >= n:
                break
            if chain[k].key not in present:
                break
        i += 1
    return k


class Filter:
    """A parsed filter: alternatives (OR) of terms (AND of chains)."""

    __slots__ = ("_text", "terms", "words", "broken", "anyof", "_plan")

    def __init__(self, text: Optional[str], terms: tuple[Term, ...]) -> None:
        self._text = text
        self.terms = terms
        # an alternative with an empty chain ("a, .b") is an error when
        # evaluated, as in the reference (set by the reader)
        self.broken: Optional[Exception] = None
        words: set[str] = set()
        plan = []
        single = True
        for term in terms:
            keys = []
            chains = []
            for chain in term:
                if len(chain) != 1:
                    chains.append(chain)
                for w in chain:
                    keys.append(w.key)
            words.update(keys)
            if len(keys) != 1 or chains:
                single = False
            plan.append((frozenset(keys), tuple(chains)))
        self.words = frozenset(words)
        # alternatives of one word each: matching is a set intersection
        self.anyof: Optional[frozenset[str]] = (
            self.words if single and terms else None)
        # per alternative: the keys that must be present, and the chains
        # whose order must be checked
        self._plan = tuple(plan)

    def matches(self, ctx: Sequence[Label], present: AbstractSet[str]) -> bool:
        """True if some alternative matches the ordered context; `present`
        (a set, or a dict's keys) holds the keys (`label_keys`) of the
        labels in ctx."""
        if self.broken is not None:
            return self._matches_broken(ctx, present)
        anyof = self.anyof
        if anyof is not None:
            for key in anyof:
                if key in present:
                    return True
            return False
        for keys, chains in self._plan:
            if keys <= present:
                for chain in chains:
                    if not _chain_matches(chain, ctx):
                        break
                else:
                    return True
        return False

    def _matches_broken(self, ctx: Sequence[Label],
                        present: AbstractSet[str]) -> bool:
        for term, (keys, chains) in zip(self.terms, self._plan):
            if not all(term):
                assert self.broken is not None
                raise self.broken
            if keys <= present and all(
                    _chain_matches(chain, ctx) for chain in chains):
                return True
        return False

    def might_match(self, ctx: Sequence[Label], present: Container[str],
                    below: Container[str]) -> bool:
        """False if no extension of the context by labels whose keys are in
        `below` can match: the reference's test, exactly (a chain's part
        matched at the end of the context, as its ``_match_adjacent``
        counts it, and the rest among the labels below)."""
        for term in self.terms:
            if self.broken is not None and not all(term):
                raise self.broken
            for chain in term:
                done = _match_adjacent(chain, ctx, present)
                if any(w.key not in below for w in chain[done:]):
                    break
            else:
                return True
        return False

    @property
    def text(self) -> str:
        """The filter as written (or rebuilt from its words)."""
        if self._text is None:
            self._text = ", ".join("..".join(".".join(w.key for w in chain)
                                             for chain in term)
                                   for term in self.terms)
        return self._text

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"
