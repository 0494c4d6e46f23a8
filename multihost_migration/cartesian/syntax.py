"""Statements of the Cartesian format, read from text into a syntax tree.

Lines are grouped into blocks by indentation: a header line (``variants:``,
``- name:``, ``filter:``) owns the following lines indented deeper than it.
Blank lines and lines starting with ``#`` or ``//`` are ignored; tabs
expand to 8 columns.  There is no line continuation (a trailing ``\\`` is
part of the value).  A ``#`` starts a comment after ``only``/``no``/
``join``/``del``/``suffix`` and after a ``variants`` or entry header's
``:``, while in a value it is kept and ``//`` is no comment at all (as the
reference parser does).  A block's last ``suffix`` applies at the block's
end, whatever its position.  ``include`` is resolved here, relative to the
including file, so later stages see one tree whose statements remember the
file and line they came from.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from multihost_migration.cartesian.filters import Filter, parse_filter
from multihost_migration.errors import ConfigSyntaxError, MissingIncludeError

STRING_FILE = "<string>"

OPERATORS = ("?+=", "?<=", "?=", "+=", "<=", "~=", "=")
_ASSIGN_RE = re.compile(r"^(.+?)\s*(\?\+=|\?<=|\?=|\+=|<=|~=|=)(.*)$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_VARIANTS_RE = re.compile(
    r"^variants(?:\s+([A-Za-z0-9_\-]+))?\s*((?:\[[^\]]*\]\s*)*):\s*(#.*)?$")
_META_RE = re.compile(r"\[\s*([A-Za-z0-9_\-]+)\s*(?:=\s*([^\]]*?))?\s*\]")
_ENTRY_RE = re.compile(r"^-\s*(@?)([A-Za-z0-9_.\-]+)\s*:(.*)$")
_COND_RE = re.compile(r"^(!?)\s*([A-Za-z0-9_.\-@,()=\s]+?)\s*:(.*)$")
_VAR_IN_PARENS = re.compile(r"\([^()]*\)")


@dataclass(frozen=True)
class Loc:
    """Where a statement came from."""

    filename: str
    line: int
    text: str


@dataclass(frozen=True)
class Assign:
    """``key op value``; op is one of OPERATORS."""

    op: str
    key: str
    value: str
    loc: Loc


@dataclass(frozen=True)
class Delete:
    """``del key``."""

    key: str
    loc: Loc


@dataclass(frozen=True)
class OnlyNo:
    """``only filter`` (keep=True) or ``no filter`` (keep=False)."""

    keep: bool
    filter: Filter
    loc: Loc


@dataclass(frozen=True)
class Cond:
    """``filter:`` block (or ``!filter:`` when negative)."""

    negative: bool
    filter: Filter
    body: tuple["Stmt", ...]
    loc: Loc


@dataclass(frozen=True)
class Suffix:
    """``suffix _x``: keys set so far in this block get the suffix."""

    suffix: str
    loc: Loc


@dataclass(frozen=True)
class Join:
    """``join f1 f2 ...``: product of the dicts each filter selects."""

    filters: tuple[Filter, ...]
    loc: Loc


@dataclass(frozen=True)
class Entry:
    """``- [@]name: deps`` of a variants block, with its body."""

    name: str
    at: bool
    deps: tuple[str, ...]
    body: tuple["Stmt", ...]
    loc: Loc


@dataclass(frozen=True)
class Variants:
    """``variants [var] [meta]:`` with its entries."""

    var: Optional[str]
    meta: dict[str, str]
    entries: tuple[Entry, ...]
    loc: Loc


Stmt = Union[Assign, Delete, OnlyNo, Cond, Suffix, Join, Variants]


@dataclass
class _Line:
    indent: int
    text: str
    number: int
    raw: str


@dataclass
class _Source:
    filename: str
    lines: list[_Line]
    pos: int = 0
    display: str = field(default="")


def strip_value(value: str) -> str:
    """Strip spaces, then one pair of matching outer quotes."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _read_lines(text: str) -> list[_Line]:
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        raw = raw.rstrip().expandtabs()
        stripped = raw.lstrip()
        if not stripped or stripped.startswith("#") or stripped.startswith("//"):
            continue
        lines.append(_Line(len(raw) - len(stripped), stripped, number, raw))
    return lines


Opener = Callable[[str], str]


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


class SyntaxReader:
    """Reads Cartesian text into a tuple of statements."""

    def __init__(self, opener: Opener = _read_file) -> None:
        self._open = opener
        self._including: list[str] = []

    def read_text(self, text: str, filename: str = STRING_FILE) -> tuple[Stmt, ...]:
        src = _Source(filename, _read_lines(text))
        body = self._block(src, -1)
        if src.pos < len(src.lines):   # pragma: no cover - _block eats all
            line = src.lines[src.pos]
            raise self._error(src, line, "unexpected line")
        return body

    def read_file(self, path: str) -> tuple[Stmt, ...]:
        try:
            text = self._open(path)
        except OSError as err:
            raise ConfigSyntaxError(f"cannot read config file: {err}", path) from err
        return self.read_text(text, path)

    # -- helpers -------------------------------------------------------

    @staticmethod
    def _error(src: _Source, line: _Line, message: str,
               column: Optional[int] = None) -> ConfigSyntaxError:
        col = line.indent + 1 if column is None else column
        return ConfigSyntaxError(message, src.filename, line.number, col, line.raw)

    @staticmethod
    def _loc(src: _Source, line: _Line) -> Loc:
        return Loc(src.filename, line.number, line.raw)

    def _filter(self, src: _Source, line: _Line, text: str) -> Filter:
        column = line.raw.find(text) + 1 if text else line.indent + 1
        return parse_filter(text, src.filename, line.number, column, line.raw)

    # -- blocks ----------------------------------------------------------

    def _block(self, src: _Source, parent_indent: int) -> tuple[Stmt, ...]:
        """Statements on the lines indented deeper than parent_indent."""
        body: list[Stmt] = []
        while src.pos < len(src.lines):
            line = src.lines[src.pos]
            if line.indent <= parent_indent:
                break
            src.pos += 1
            self._statement(src, line, body)
        return _suffix_last(body)

    def _statement(self, src: _Source, line: _Line, body: list[Stmt]) -> None:
        text = line.text
        word, _, rest = text.partition(" ")
        rest = rest.strip()
        if word in ("only", "no", "del", "join"):
            rest = rest.split("#", 1)[0].strip()
        elif word == "suffix":          # "suffix _x#c" is fine, "_x #c" not
            rest = rest.split("#", 1)[0]
        if word == "include" and rest and not _starts_operator(rest):
            body.extend(self._include(src, line, rest))
        elif word in ("only", "no") and rest and not _starts_operator(rest):
            body.append(OnlyNo(word == "only", self._filter(src, line, rest),
                               self._loc(src, line)))
        elif word == "del" and rest and not _starts_operator(rest):
            if not _KEY_RE.match(rest):
                raise self._error(src, line, f"bad key for del: {rest!r}")
            body.append(Delete(rest, self._loc(src, line)))
        elif word == "suffix" and rest and not _starts_operator(rest):
            if not _KEY_RE.match(rest):
                raise self._error(src, line, f"bad suffix: {rest!r} (letters, "
                                  "digits, '_' and '-' only)")
            body.append(Suffix(rest, self._loc(src, line)))
        elif word == "join" and rest and not _starts_operator(rest):
            filt = self._filter(src, line, rest)
            factors = tuple(Filter(filt.text, (term,)) for term in filt.terms)
            body.append(Join(factors, self._loc(src, line)))
        elif text.startswith("variants") and _VARIANTS_RE.match(text):
            body.append(self._variants(src, line))
        elif text.startswith("-"):
            raise self._error(src, line, "variant entry '- name:' outside a "
                              "variants block (check its indentation)")
        else:
            cond = self._condition(src, line)
            if cond is not None:
                body.append(cond)
            else:
                body.append(self._assignment(src, line, text))

    def _assignment(self, src: _Source, line: _Line, text: str) -> Assign:
        m = _ASSIGN_RE.match(text)
        if not m:
            raise self._error(src, line, "expected 'key = value', a filter "
                              "block 'filter:', or a statement (variants, "
                              "only, no, del, include, suffix, join)")
        return Assign(m.group(2), m.group(1), strip_value(m.group(3)),
                      self._loc(src, line))

    def _condition(self, src: _Source, line: _Line) -> Optional[Cond]:
        m = _COND_RE.match(line.text)
        if not m:
            return None
        ftext = m.group(2)
        if "=" in _VAR_IN_PARENS.sub("", ftext):
            return None        # an '=' outside (var=name): an assignment
        if "=" in ftext:
            raise self._error(
                src, line, "a (variants=name) filter cannot start a conditional "
                "block (the reference parser reads this line as an assignment "
                "to a key named " + repr(ftext.split("=")[0].strip()) + "); "
                "use the plain variant name", line.raw.find("(") + 1)
        rest = m.group(3).strip()
        if rest.startswith("#"):
            raise self._error(src, line, "a comment cannot follow a filter "
                              "block's ':' (the reference parser rejects it)")
        filt = self._filter(src, line, ftext)
        inline: tuple[Stmt, ...] = ()
        if rest:
            inner: list[Stmt] = []
            self._statement(src, _Line(line.indent, rest, line.number, line.raw),
                            inner)
            if any(isinstance(s, Variants) for s in inner):
                raise self._error(src, line, "variants cannot follow a filter "
                                  "on the same line")
            inline = tuple(inner)
        body = _suffix_last(list(inline + self._block(src, line.indent)))
        return Cond(bool(m.group(1)), filt, body, self._loc(src, line))

    def _variants(self, src: _Source, line: _Line) -> Variants:
        m = _VARIANTS_RE.match(line.text)
        assert m is not None
        meta = {k: v.strip() for k, v in _META_RE.findall(m.group(2) or "")}
        entries: list[Entry] = []
        while src.pos < len(src.lines):
            entry_line = src.lines[src.pos]
            if entry_line.indent <= line.indent:
                break
            src.pos += 1
            em = _ENTRY_RE.match(entry_line.text)
            if not em:
                raise self._error(src, entry_line, "expected a variant entry "
                                  "'- name:' in a variants block")
            deps_text = em.group(3).split("#", 1)[0]
            deps = tuple(d.strip() for d in deps_text.split(",") if d.strip())
            body = self._block(src, entry_line.indent)
            entries.append(Entry(em.group(2), em.group(1) == "@", deps, body,
                                 self._loc(src, entry_line)))
        return Variants(m.group(1), meta, tuple(entries), self._loc(src, line))

    def _include(self, src: _Source, line: _Line, name: str) -> tuple[Stmt, ...]:
        name = strip_value(name)
        base = (os.path.dirname(src.filename)
                if src.filename != STRING_FILE else os.getcwd())
        path = os.path.normpath(os.path.join(base, os.path.expanduser(name)))
        if path in self._including:
            raise self._error(src, line, f"include loop: {path} includes itself")
        try:
            text = self._open(path)
        except FileNotFoundError as err:
            raise MissingIncludeError(path, src.filename, line.number,
                                      line.raw.find(name) + 1, line.raw) from err
        except OSError as err:
            raise self._error(src, line, f"cannot read included file {path}: "
                              f"{err}") from err
        self._including.append(path)
        try:
            return self.read_text(text, path)
        finally:
            self._including.pop()


def _suffix_last(body: list[Stmt]) -> tuple[Stmt, ...]:
    """Move a block's last ``suffix`` to its end; earlier ones have no
    effect (the reference applies one suffix, once all else is done)."""
    suffixes = [s for s in body if isinstance(s, Suffix)]
    if not suffixes:
        return tuple(body)
    rest: list[Stmt] = [s for s in body if not isinstance(s, Suffix)]
    rest.extend(suffixes[-1:])
    return tuple(rest)


def _starts_operator(rest: str) -> bool:
    return any(rest.startswith(op) for op in OPERATORS)
