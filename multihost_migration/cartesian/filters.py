"""Filter expressions of the Cartesian format and their matching.

A filter selects dicts by the names of the variants that make them up::

    qcow2..(guest_os=Fedora).14, RHEL.6..raw

``,`` (or whitespace) separates alternatives (OR), ``..`` joins chains that
must all be present (AND, in any order), ``.`` means "immediately followed
by" and ``(var=name)`` names a child of a named ``variants var:`` block.

A dict's context is the ordered tuple of its variant labels, outermost
first.  Matching is monotone: a filter that matches a context also matches
every extension of it, which lets the expander decide filters early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import AbstractSet, Container, Optional, Sequence

from multihost_migration.errors import ConfigSyntaxError

_WORD = r"[A-Za-z0-9_\-@]+(?:\.[A-Za-z0-9_\-@]+)*"
_NAME_RE = re.compile(r"[A-Za-z0-9_\-]+")
_VAR_RE = re.compile(r"\(([A-Za-z0-9_\-]+)=([A-Za-z0-9_\-]+)\)")


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


@dataclass(frozen=True)
class Word:
    """One filter word: ``name`` or ``(var=name)``."""

    name: str
    var: Optional[str] = None

    def matches(self, label: Label) -> bool:
        if label.name != self.name:
            return False
        return self.var is None or label.var == self.var

    @property
    def key(self) -> str:
        """The key used in the sets of labels a subtree can still add."""
        return self.name if self.var is None else f"({self.var}={self.name})"


Chain = tuple[Word, ...]        # words joined by "." (adjacent, in order)
Term = tuple[Chain, ...]        # chains joined by ".." (all present)


def _chain_matches(chain: Chain, ctx: Sequence[Label]) -> bool:
    n = len(chain)
    first = chain[0]
    for start in range(len(ctx) - n + 1):
        if first.matches(ctx[start]) and all(
                chain[i].matches(ctx[start + i]) for i in range(1, n)):
            return True
    return False


@dataclass(frozen=True)
class Filter:
    """A parsed filter: alternatives (OR) of terms (AND of chains)."""

    text: str
    terms: tuple[Term, ...]

    def matches(self, ctx: Sequence[Label],
                present: Optional[Container[str]] = None) -> bool:
        """True if some alternative matches the ordered context.  `present`
        (the names and texts of the labels in ctx) enables a fast path."""
        for term in self.terms:
            if present is not None and not all(
                    w.key in present for chain in term for w in chain):
                continue
            if all((len(chain) == 1 and present is not None)
                   or _chain_matches(chain, ctx) for chain in term):
                return True
        return False

    def might_match(self, present: Container[str],
                    below: AbstractSet[str]) -> bool:
        """False only if no extension of a context whose label names and
        texts are `present` by labels from `below` can match.  Conservative."""
        for term in self.terms:
            if all(w.key in below or w.key in present
                   for chain in term for w in chain):
                return True
        return False


def _parse_word(text: str) -> Word:
    m = _VAR_RE.fullmatch(text)
    if m:
        return Word(m.group(2), m.group(1))
    if _NAME_RE.fullmatch(text):
        return Word(text)
    raise ValueError(text)


def _split_chain(text: str) -> list[str]:
    """Split on "." outside parentheses."""
    parts: list[str] = []
    depth = 0
    cur = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "." and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def parse_filter(text: str, filename: Optional[str] = None,
                 line: Optional[int] = None, column: int = 1,
                 source: str = "") -> Filter:
    """Parse a filter expression; raise ConfigSyntaxError pointing at it."""
    terms: list[Term] = []
    alternatives = [a for a in re.split(r"[,\s]+", text.strip()) if a]
    if not alternatives:
        raise ConfigSyntaxError("empty filter", filename, line, column, source)
    for alt in alternatives:
        chains: list[Chain] = []
        for chain_text in alt.split(".."):
            try:
                if not chain_text:
                    raise ValueError(chain_text)
                chains.append(tuple(_parse_word(w) for w in _split_chain(chain_text)))
            except ValueError as err:
                col = source.find(alt, column - 1) + 1 if source.find(alt, column - 1) >= 0 else column
                raise ConfigSyntaxError(
                    f"bad filter word {str(err)!r} in {alt!r} (expected name, "
                    f"(variants=name), joined by '.', '..' or ','",
                    filename, line, col, source) from err
        terms.append(tuple(chains))
    return Filter(text.strip(), tuple(terms))
