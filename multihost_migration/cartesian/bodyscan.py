"""A quick look at an entry's body, to read it later (or never).

The reader does not read the body of a ``- name:`` entry when it meets it:
it only looks over the body's lines, one regular expression a line, and
keeps an index of what the body can add to a dict's context: the label
keys of its entries and the names its filters hold.  The expander decides
with that index whether a filter can match anything below the entry, and
reads the body only when the expansion enters the entry.

A body is read at once, as before, when the look is not sure of it: an
``include`` or ``join``, a line this look does not know (anything the
reader might reject, or read otherwise than plainly), an empty
``variants:`` block (the reference's reading of the next line depends on
it).  So a body read later holds no error a statement-by-statement reading
finds line by line; what it may still hold is an error of structure the
look misses, raised when (and only if) the expansion enters the entry.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from multihost_migration.cartesian.model import Line

_NAME = r"[A-Za-z0-9_\-]+"
_WORD = rf"(?:{_NAME}|\(\s*{_NAME}\s*(?:=\s*{_NAME}\s*)?\))"
_CHAIN = rf"{_WORD}(?:\.\.?{_WORD})*"
# after only/no, and an entry's dependencies: ',' or spaces between
# alternatives, nothing else (as the reference reads the words)
_FILTER = rf"{_CHAIN}(?:(?:, *| +){_CHAIN})*"
# before a conditional block's ':' the reference drops the spaces
_COND_CHAIN = rf"{_WORD}(?: *\.\.? *{_WORD})*"
_COND_FILTER = rf"{_COND_CHAIN}(?: *, *{_COND_CHAIN})*"
_COMMENT = r"\s*(?:#.*)?$"

_ENTRY = re.compile(rf"-\s*@?({_NAME}(?:\.{_NAME})*):(?: *{_FILTER})?{_COMMENT}")
_VARIANTS = re.compile(rf"variants(?: +({_NAME}))? *:{_COMMENT}")     # no [meta]
_ONLY_NO = re.compile(rf"(?:only|no) +{_FILTER}{_COMMENT}")
_DEL = re.compile(rf"del +{_NAME}{_COMMENT}")
_SUFFIX = re.compile(rf"suffix +{_NAME}$")
_COND = re.compile(rf"(?:! *)?{_COND_FILTER} *:")
_OPS = re.compile(r"\=|\+\=|\<\=|\~\=|\?\=|\?\+\=|\?\<\=")
_NAMES = re.compile(_NAME)
_VAR_WORD = re.compile(rf"\(\s*({_NAME})\s*=\s*({_NAME})\s*\)")
_KEYWORD = re.compile(r"(?:variants[: ]|only |no |include |del |suffix |join |-)")


class _Frame:
    """An open ``variants`` block (its entries' indentation once seen) or
    conditional block."""

    __slots__ = ("indent", "var", "entry_indent", "cond")

    def __init__(self, indent: int, var: Optional[str], cond: bool) -> None:
        self.indent = indent
        self.var = var
        self.cond = cond
        self.entry_indent = -1


class Index:
    """What a body's look found: where the body ends (the index of the
    first line after it), the label keys and the filter names."""

    __slots__ = ("end", "keys", "words")

    def __init__(self, end: int, keys: frozenset[str], words: frozenset[str]) -> None:
        self.end = end
        self.keys = keys
        self.words = words


def _filter_words(text: str, words: set[str]) -> None:
    """Every name of a filter's text (a superset of its words' keys)."""
    words.update(_NAMES.findall(text))
    if "(" in text:
        words.update(f"({var}={name})" for var, name in _VAR_WORD.findall(text))


_BAD, _PLAIN, _COND_BLOCK = 0, 1, 2


def _statement(text: str, words: set[str]) -> int:
    """A line (or the rest of a conditional block's line) that is no entry
    and no ``variants``: _BAD if not plainly readable, _COND_BLOCK if it
    opens a conditional block, else _PLAIN."""
    m = _OPS.search(text)
    if m is not None and _KEYWORD.match(text) is None:
        colon = text.find(":")
        if colon < 0 or colon > m.end():
            return _PLAIN           # an assignment
    elif text[0] in "ond" and _KEYWORD.match(text) is not None:
        if text.startswith(("only ", "no ")):
            if _ONLY_NO.match(text) is None:
                return _BAD
            _filter_words(text, words)
            return _PLAIN
        return _PLAIN if _DEL.match(text) is not None else _BAD
    elif text[0] in "-vijs" and _KEYWORD.match(text) is not None:
        return _PLAIN if _SUFFIX.match(text) is not None else _BAD
    cond = _COND.match(text)
    if cond is None:
        return _BAD
    _filter_words(cond.group(), words)
    rest = text[cond.end():].strip()
    if rest and (rest.startswith(("-", "variants")) or not _statement(rest, words)):
        return _BAD
    return _COND_BLOCK


def _close(stack: list[_Frame], indent: int) -> None:
    while stack and stack[-1].indent >= indent:
        stack.pop()


class _Open:
    """A nested entry whose body the look is in: its index so far."""

    __slots__ = ("start", "indent", "keys", "words")

    def __init__(self, start: int, indent: int) -> None:
        self.start = start
        self.indent = indent
        self.keys: set[str] = set()
        self.words: set[str] = set()


Cache = dict[int, Index]


def scan(lines: Sequence[Line], start: int, indent: int,
         cache: Cache) -> Optional[Index]:
    """The index of the body starting at lines[start] (the lines deeper
    than `indent`), or None if it is to be read at once.  The indexes of
    the entries nested in it are put into `cache` (by their body's start)
    on the way, so that reading the body later looks at no line again."""
    found = cache.get(start)
    if found is not None:
        return found
    outer = _Open(start, indent)
    nested: list[_Open] = []
    stack: list[_Frame] = []
    n = len(lines)
    i = start
    while i < n:
        line = lines[i]
        here = line.indent
        if here <= indent:
            break
        while nested and nested[-1].indent >= here:
            _done(nested.pop(), i, cache)
        if not _line(lines, i, stack, outer, nested):
            return None
        if line.text[0] == "-":
            nested.append(_Open(i + 1, here))
        i += 1
    for entry in nested:
        _done(entry, i, cache)
    if i == start:
        return None
    return Index(i, frozenset(outer.keys), frozenset(outer.words))


def _done(entry: _Open, end: int, cache: Cache) -> None:
    if end > entry.start:
        cache[entry.start] = Index(end, frozenset(entry.keys), frozenset(entry.words))


def _line(lines: Sequence[Line], i: int, stack: list[_Frame],
          outer: _Open, nested: list[_Open]) -> bool:
    """Look at lines[i]: False if it is not plainly readable; else its
    label keys and filter names go into the indexes of `outer` and of the
    open `nested` entries."""
    line = lines[i]
    here = line.indent
    text = line.text
    _close(stack, here)
    top = stack[-1] if stack else None
    if text[0] == "-":
        m = _ENTRY.match(text)
        if (m is None or top is None or top.cond
                or (top.entry_indent >= 0 and here > top.entry_indent)):
            return False
        top.entry_indent = here
        keys = m.group(1).split(".")
        if top.var:
            keys += [f"({top.var}={name})" for name in keys]
        outer.keys.update(keys)
        for entry in nested:
            entry.keys.update(keys)
        return True
    if top is not None and not top.cond and here <= top.entry_indent:
        return False            # in a variants block, but no entry
    if text.startswith(("variants:", "variants ")):
        m = _VARIANTS.match(text)
        following = lines[i + 1] if i + 1 < len(lines) else None
        if (m is None or any(f.cond for f in stack) or following is None
                or following.indent <= here or following.text[0] != "-"):
            return False
        stack.append(_Frame(here, m.group(1), False))
        return True
    words: set[str] = set()
    kind = _statement(text, words)
    if kind == _BAD:
        return False
    if words:
        outer.words |= words
        for entry in nested:
            entry.words |= words
    if kind == _COND_BLOCK:
        stack.append(_Frame(here, None, True))
    return True
