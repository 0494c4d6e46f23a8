"""Reading Cartesian config text into the variant tree (`model`).

The reading follows the reference parser (avocado-vt's
``virttest/cartesian_config.py``) token for token, so that every text it
accepts means the same here and every text it rejects is rejected here,
but each error names the file, line and column and shows the line:

* Lines: blank lines and lines starting with ``#`` or ``//`` are skipped;
  tabs expand to 8 columns; a block is every following line indented
  deeper than its header, whatever the exact indentation.  There is no
  line continuation (a trailing ``\\`` is part of the value).
* A line that is not a statement (``variants``, ``- entry:``, ``only``,
  ``no``, ``include``, ``del``, ``suffix``, ``join``) and holds an
  operator (``= += <= ~= ?= ?+= ?<=``) with no ``:`` before it is an
  assignment: the key is everything before the operator, the value
  everything after it, comments included (``#`` is kept in values), one
  pair of outer quotes removed.  Otherwise the line is read word by word
  ("strict" reading): ``#`` starts a comment, ``filter:`` opens a
  conditional block whose rest of line, if any, is its first statement.
* As in the reference, a line right after an empty ``variants:`` block
  ending its scope is read strictly, and other such quirks are kept.

Includes are read here, relative to the including file (to the current
directory for text given as a string).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from typing import Callable, Optional, Sequence

from multihost_migration.cartesian import bodyscan, ops
from multihost_migration.cartesian.filters import Chain, Filter, Label, Term, Word
from multihost_migration.cartesian.model import (
    Assign, Batch, Cond, Delete, FileMap, Item, Join, Lazy, Line, Loc, Node,
    OnlyNo, Suffix)
from multihost_migration.errors import ConfigSyntaxError, MissingIncludeError

STRING_FILE = "<string>"

log = logging.getLogger(__name__)

# what the reference names a block written "variants [meta] name:"
_CLASS_NAME = "<class 'virttest.cartesian_config.LIdentifier'>"

# token kinds
IDENT = "identifier"
STRING = "string"
WHITE = "whitespace"
COLON = "':'"
VARIANTS = "'variants'"
DOT = "'.'"
VARIANT = "'-'"
DEFAULT = "'@'"
ONLY = "'only'"
SUFFIX = "'suffix'"
JOIN = "'join'"
NO = "'no'"
NOTCOND = "'!'"
COMMA = "','"
LBRACKET = "'['"
RBRACKET = "']'"
LPAREN = "'('"
RPAREN = "')'"
INCLUDE = "'include'"
DEL = "'del'"
OP = "operator"
ENDL = "end of line"
INDENT = "indent"
ENDBLOCK = "end of block"

# what the reference's tokens print as (keys are built from them)
_TEXT = {COLON: ":", VARIANTS: "variants", DOT: ".", VARIANT: "-",
         DEFAULT: "@", ONLY: "only", SUFFIX: "suffix", JOIN: "join",
         NO: "no", NOTCOND: "!", COMMA: ",", LBRACKET: "[", RBRACKET: "]",
         LPAREN: "(", RPAREN: ")", INCLUDE: "include", DEL: "del",
         ENDL: "endl", WHITE: ""}
_SINGLE = {"-": VARIANT, ".": DOT, ":": COLON, "@": DEFAULT, ",": COMMA,
           "[": LBRACKET, "]": RBRACKET, "(": LPAREN, ")": RPAREN,
           "!": NOTCOND}
_OPERS = ("", "~", "+", "<", "?", "?+", "?<")
_OPS_RE = re.compile(r"\=|\+\=|\<\=|\~\=|\?\=|\?\+\=|\?\<\=")
_IDENT_CHARS = "_-"
_OPER_CHARS = "+<?~"

_KEYWORD_STARTS = frozenset("v-onidsj")
# the tokens of `Lexer._simple`: a name, spaces (before something), a
# one-character token, a comment
_SIMPLE_TOKEN = re.compile(r"([A-Za-z0-9_\-]+)|( +)(?=\S)|([.,:@!()\[\]])|(#)")
# a conditional block's line whose filter is plain names: `simple_condition`
_NAME = r"[A-Za-z0-9_\-]+"
_CHAIN = _NAME + r"(?:\.\.?" + _NAME + r")*"
_SIMPLE_COND = re.compile(r"(" + _CHAIN + r"(?: *, *" + _CHAIN + r")*)[ ]*:")
_KEYWORD_TOKENS = {"o": ONLY, "n": NO, "d": DEL, "s": SUFFIX, "j": JOIN}


def _keyword(line: str) -> int:
    """Where the text after a statement keyword starts (0 if none); the
    reference's test: the line starts with the keyword and a space
    (``variants`` also with ':'), or with '-'."""
    l0 = line[0]
    if l0 == "v":
        if line.startswith("variants:"):
            return 9
        if line.startswith("variants "):
            return 8
    elif l0 == "-":
        return 1
    elif l0 == "o":
        if line.startswith("only "):
            return 4
    elif l0 == "n":
        if line.startswith("no "):
            return 2
    elif l0 == "i":
        if line.startswith("include "):
            return 7
    elif l0 == "d":
        if line.startswith("del "):
            return 3
    elif l0 == "s":
        if line.startswith("suffix "):
            return 6
    elif l0 == "j":
        if line.startswith("join "):
            return 4
    return 0


_BLOCK_ALLOWED = frozenset({VARIANTS, IDENT, ONLY, NO, INCLUDE, DEL, NOTCOND,
                            SUFFIX, JOIN})
_VARIANTS_ALLOWED = frozenset({VARIANT})
_IDENT_END = frozenset({OP, COLON, ENDL})
_EXPECTED = {
    frozenset({IDENT, DOT, COLON}): "':' after the entry's name (a name is "
                                    "letters, digits, '_', '-' and '.')",
    frozenset({IDENT}): "a name",
    frozenset({INDENT, ENDBLOCK}): "a new line",
    _BLOCK_ALLOWED: "a statement: 'key = value', 'filter:', variants, only, "
                    "no, include, del, suffix or join",
    _VARIANTS_ALLOWED: "a variant entry '- name:' (a 'variants:' line must "
                       "be followed by its entries)",
}


class Tok:
    """A token: its kind, text and position in its line (0-based)."""

    __slots__ = ("kind", "value", "pos")

    def __init__(self, kind: str, value: str = "", pos: int = 0) -> None:
        self.kind = kind
        self.value = value
        self.pos = pos

    def text(self) -> str:
        """The token as the reference prints it (keys are built from it)."""
        if self.kind in (IDENT, STRING, OP):
            return self.value
        return _TEXT.get(self.kind, self.kind)

    def show(self) -> str:
        if self.kind in (IDENT, STRING, OP):
            return f"{self.kind} {self.value!r}"
        return self.kind

    def __repr__(self) -> str:
        return f"Tok({self.kind}, {self.value!r}, {self.pos})"


class Reader:
    """The lines of a text, served one block at a time."""

    def __init__(self, text: str, filename: str, is_file: bool) -> None:
        self.filename = filename
        self.is_file = is_file
        self.lines: list[Line] = []
        append = self.lines.append
        for number, raw in enumerate(text.splitlines(), 1):
            raw = raw.rstrip()
            if not raw:
                continue
            if "\t" in raw:
                raw = raw.expandtabs()
            stripped = raw.lstrip()
            first = stripped[0]
            if first == "#" or (first == "/" and stripped.startswith("//")):
                continue
            indent = len(raw) - len(stripped)
            append(Line(stripped, indent, number, indent, raw))
        self.index = 0
        self.stored: Optional[Line] = None
        self.indexes: bodyscan.Cache = {}     # of the entries' bodies

    def view(self, index: int) -> "Reader":
        """A reader of the same lines from `index` (an entry's body)."""
        other = Reader("", self.filename, self.is_file)
        other.lines = self.lines
        other.indexes = self.indexes
        other.index = index
        return other

    def wrap_top_level_entries(self) -> bool:
        """A file whose first statement is a top-level entry (``- name:``,
        as tp-qemu's test cfgs, which avocado-vt pastes under ``variants
        subtest:``) is read as the entries of an implicit ``variants:``
        block: a ``variants:`` line is put before it and every line is
        indented by one more column (numbers and error columns unchanged)."""
        if not self.lines or self.lines[0].indent or not self.lines[0].text.startswith("-"):
            return False
        first = self.lines[0]
        self.lines = [Line("variants:", 0, first.number, 0, "variants:")] + [
            Line(line.text, line.indent + 1, line.number, line.offset, line.raw)
            for line in self.lines]
        return True

    def next_line(self, prev_indent: int) -> tuple[Optional[Line], int]:
        """The next line if indented deeper than prev_indent, else None and
        the next line's indentation (-1 at the end)."""
        if self.stored is not None:
            line = self.stored
            self.stored = None
            return line, line.indent
        if self.index >= len(self.lines):
            return None, -1
        line = self.lines[self.index]
        if line.indent <= prev_indent:
            return None, line.indent
        self.index += 1
        return line, line.indent

    def store(self, text: str, indent: int, number: int, offset: int,
              raw: str) -> None:
        """Make `text` the next line (the statement after ``filter:``)."""
        stripped = text.strip()
        if stripped:
            offset += len(text) - len(text.lstrip())
            self.stored = Line(stripped, indent, number, offset, raw)


class Lexer:
    """The reference's lexer: the tokens of the lines of a block.

    The reference lexes lazily and its parser changes the lexing between
    tokens; the two changes that matter are reproduced here, a line being
    tokenized when its first token is asked for: `fast` (set by the
    builder between lines) selects the reading of assignment lines, and
    the rest of a conditional block's line after its ``:`` (the first
    ``:`` of a line starting with a name, with no operator before it, or
    of a line starting with ``!``) and of an ``include`` line is one
    string token."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.filename = reader.filename
        self.line = Line("", 0, 0, 0, "")
        self.prev_indent = 0
        self.fast = False
        self._buf: list[Tok] = []
        self._pos = 0
        self._pending: Optional[Line] = None    # INDENT given, not lexed

    # -- errors ----------------------------------------------------------

    def error(self, message: str, pos: Optional[int] = None) -> ConfigSyntaxError:
        line = self.line
        column = line.offset + 1 if pos is None else line.offset + pos + 1
        return ConfigSyntaxError(message, self.filename, line.number, column,
                                 line.raw)

    def loc(self, pos: int = 0) -> Loc:
        line = self.line
        return Loc(self.filename, line.number, line.offset + pos + 1, line.raw)

    # -- tokens ----------------------------------------------------------

    def next(self) -> Tok:
        if self._pos < len(self._buf):
            tok = self._buf[self._pos]
            self._pos += 1
            return tok
        line = self._pending
        if line is not None:
            self._pending = None
            self._buf = self._lex(line.text)
            self._pos = 1
            return self._buf[0]
        line, indent = self.reader.next_line(self.prev_indent)
        if line is None:
            return Tok(ENDBLOCK, "", indent)
        self.line = line
        self._pending = line
        self._buf = []
        self._pos = 0
        return Tok(INDENT, "", line.indent)

    def simple_condition(self) -> Optional[tuple[Filter, str, int]]:
        """After an INDENT: if the line is a conditional block of plain
        names (``a.b, c..d:``, no parentheses, no spaces but around ','),
        read it at once: its filter, and the rest of the line and where it
        starts.  (The same as the token by token reading.)"""
        line = self._pending
        if line is None:
            return None
        text = line.text
        m = _SIMPLE_COND.match(text)
        if m is None or (text[0] in _KEYWORD_STARTS and _keyword(text)):
            return None
        # no operator can come before this first ':': not an assignment
        self._pending = None
        alternatives = []
        for alt in m.group(1).split(","):
            alternatives.append(tuple(
                tuple(Word(w) for w in chain.strip().split("."))
                for chain in alt.split("..")))
        rest = text[m.end():]
        value = rest.lstrip()
        return (Filter(None, tuple(alternatives)), value,
                m.end() + len(rest) - len(value))

    def idle(self) -> bool:
        """Between lines, with no line stored by a conditional block."""
        return (self._pending is None and self._pos >= len(self._buf)
                and self.reader.stored is None)

    def _lex(self, line: str) -> list[Tok]:
        out: list[Tok] = []
        pos = _keyword(line)
        if pos:
            l0 = line[0]
            if l0 == "v":
                out.append(Tok(VARIANTS, "", 0))
                if pos == 9:
                    out.append(Tok(COLON, "", 8))
            elif l0 == "-":
                out.append(Tok(VARIANT, "", 0))
            elif l0 == "i":
                out.append(Tok(INCLUDE, "", 0))
                rest = line[pos:]
                value = rest.lstrip()
                out.append(Tok(STRING, value, pos + len(rest) - len(value)))
                out.append(Tok(ENDL, "", len(line)))
                return out
            else:
                out.append(Tok(_KEYWORD_TOKENS[l0], "", 0))
                while line[pos].isspace():
                    pos += 1
        elif self.fast:
            m = _OPS_RE.search(line)
            if m is not None:
                cind = line.find(":")
                if cind < 0 or cind > m.end():
                    out.append(Tok(IDENT, line[:m.start()].rstrip(), 0))
                    out.append(Tok(OP, m.group(), m.start()))
                    rest = line[m.end():]
                    value = rest.lstrip()
                    out.append(Tok(STRING, value,
                                   m.end() + len(rest) - len(value)))
                    out.append(Tok(ENDL, "", len(line)))
                    return out
        self._strict(line, pos, out, condition=(pos == 0))
        return out

    def _strict(self, line: str, pos: int, out: list[Tok],
                condition: bool) -> None:
        """Word-by-word reading of the line from `pos`.  With `condition`
        (a line starting with a name or '!'), its first ':' with no
        operator before it (any ':' after a '!') ends the words: the rest
        of the line is one string."""
        if self._simple(line, pos, out, condition):
            return
        self._chars(line, pos, out, condition)

    def _simple(self, line: str, pos: int, out: list[Tok],
                condition: bool) -> bool:
        """`_strict` for lines of names, spaces, ``.,:@!()[]`` and a
        comment (nearly all of them), by regular expression; False, and
        nothing read, for any other line."""
        start = len(out)
        match = _SIMPLE_TOKEN.match
        n = len(line)
        while pos < n:
            m = match(line, pos)
            if m is None:
                del out[start:]
                return False
            kind = m.lastindex
            if kind == 1:
                out.append(Tok(IDENT, m.group(1), pos))
            elif kind == 2:
                out.append(Tok(WHITE, "", pos))
            elif kind == 3:
                char = m.group(3)
                out.append(Tok(_SINGLE[char], "", pos))
                if char == ":" and condition:
                    rest = line[pos + 1:]
                    value = rest.lstrip()
                    out.append(Tok(STRING, value,
                                   pos + 1 + len(rest) - len(value)))
                    break
            else:
                break       # a comment
            pos = m.end()
        out.append(Tok(ENDL, "", n))
        return True

    def _chars(self, line: str, pos: int, out: list[Tok],
               condition: bool) -> None:
        """`_strict` character by character, as the reference."""
        chars = ""
        start = pos
        oper = ""
        token: Optional[Tok] = None
        seen_op = False
        negative = line[0] == "!"
        it = enumerate(line[pos:], pos)
        for pos, char in it:
            if char.isalnum() or char in _IDENT_CHARS:
                if not chars:
                    start = pos
                chars += char
            elif char in _OPER_CHARS:
                if chars:
                    out.append(Tok(IDENT, chars, start))
                    oper = ""
                chars = ""
                oper += char
            else:
                if chars:
                    out.append(Tok(IDENT, chars, start))
                    chars = ""
                if char.isspace():
                    white = pos
                    for pos, char in it:
                        if not char.isspace():
                            out.append(Tok(WHITE, "", white))
                            break
                if char.isalnum() or char in _IDENT_CHARS:
                    if not chars:
                        start = pos
                    chars += char
                elif char == "=":
                    if oper in _OPERS:
                        out.append(Tok(OP, oper + "=", pos - len(oper)))
                        seen_op = True
                    else:
                        raise self.error(f"unexpected operator {oper + '='!r}",
                                         pos - len(oper))
                    oper = ""
                elif char in _SINGLE:
                    token = Tok(_SINGLE[char], "", pos)
                elif char == '"':
                    quote = pos
                    chars = ""
                    try:
                        pos, char = next(it)
                        while char != '"':
                            chars += char
                            pos, char = next(it)
                    except StopIteration:
                        raise self.error("unterminated '\"'", quote) from None
                    # as in the reference, the string's text stays in
                    # `chars` and is read again as part of an identifier
                    start = quote
                    out.append(Tok(STRING, chars, quote))
                elif char == "#":
                    break
                elif char in _OPER_CHARS:
                    oper += char
                else:
                    raise self.error(
                        f"unexpected character {char!r} (special characters "
                        "are allowed only in the value of an assignment "
                        "'key = value')", pos)
                if token is not None:
                    out.append(token)
                    if (token.kind == COLON and condition
                            and (negative or not seen_op)):
                        rest = line[pos + 1:]
                        value = rest.lstrip()
                        out.append(Tok(STRING, value,
                                       pos + 1 + len(rest) - len(value)))
                        out.append(Tok(ENDL, "", len(line)))
                        return
                    token = None
        if chars:
            out.append(Tok(IDENT, chars, start))
        out.append(Tok(ENDL, "", len(line)))

    # -- reading helpers (the reference's names) -------------------------

    def _unexpected(self, tok: Tok, allowed: frozenset[str]) -> ConfigSyntaxError:
        what = _EXPECTED.get(allowed)
        if what is None:
            what = " or ".join(sorted(allowed))
        if tok.kind == ENDL:
            return self.error(f"expected {what}, found the end of the line",
                              tok.pos)
        return self.error(f"expected {what}, found {tok.show()}", tok.pos)

    def check(self, tok: Tok, allowed: frozenset[str]) -> Tok:
        if tok.kind not in allowed:
            raise self._unexpected(tok, allowed)
        return tok

    def next_check(self, allowed: frozenset[str]) -> Tok:
        return self.check(self.next(), allowed)

    def next_check_nw(self, allowed: frozenset[str]) -> Tok:
        tok = self.next()
        while tok.kind == WHITE:
            tok = self.next()
        return self.check(tok, allowed)

    def until(self, end: frozenset[str]) -> list[Tok]:
        """Tokens up to and including the first of kind in `end`."""
        out = []
        tok = self.next()
        while tok.kind not in end:
            out.append(tok)
            tok = self.next()
        out.append(tok)
        return out

    def until_no_white(self, end: frozenset[str]) -> list[Tok]:
        return [t for t in self.until(end) if t.kind != WHITE]

    def until_check(self, allowed: frozenset[str], end: frozenset[str]) -> list[Tok]:
        """As `until`, refusing tokens of other kinds than `allowed`."""
        out = []
        tok = self.check(self.next(), allowed | end)
        while tok.kind not in end:
            out.append(tok)
            tok = self.check(self.next(), allowed | end)
        out.append(tok)
        return out

    def rest_line(self) -> list[Tok]:
        return self.until(frozenset({ENDL}))[:-1]

    def rest_as_string_token(self) -> Tok:
        """The rest of the line as one string (see `Lexer`)."""
        tok = self.next()
        if tok.kind != STRING:      # pragma: no cover - the lexer gives one
            raise self.error("expected the rest of the line", tok.pos)
        self.next()             # the end of the line
        return tok


_ENDL = frozenset({ENDL})
_INDENT_ALLOWED = frozenset({INDENT, ENDBLOCK})
_VARIANTS_IN = frozenset({LBRACKET, COLON, IDENT, ENDL})
_ENTRY_FIRST = frozenset({IDENT, DEFAULT, INDENT, ENDBLOCK})
_NAME_PARTS = frozenset({IDENT, DOT})
_FILTER_FIRST = frozenset({IDENT, LPAREN, ENDL, WHITE})
_FILTER_NEXT = frozenset({IDENT, COMMA, DOT, LPAREN, ENDL, WHITE})
_FILTER_AFTER_OR = frozenset({IDENT, COMMA, DOT, LPAREN, ENDL})


def parse_filter(lexer: Lexer, tokens: Sequence[Tok]) -> Filter:
    """The reference's filter grammar over `tokens`; raise at the
    offending token."""
    words = list(tokens)
    words.append(Tok(ENDL, "", len(lexer.line.text)))
    n = len(words)
    pos = 1

    def take_nw(paren: Tok) -> Tok:
        """The next token inside '(...)' but a space."""
        nonlocal pos
        while pos < n:
            tok = words[pos]
            pos += 1
            if tok.kind == ENDL:
                break
            if tok.kind != WHITE:
                return tok
        raise lexer.error("'(' is not closed: expected "
                          "(variants_name=entry_name)", paren.pos)

    alternatives: list[Term] = []
    and_filter: list[Chain] = []
    con_filter: list[Word] = []
    dots = 1
    tok = lexer.check(words[0], _FILTER_FIRST)
    kind = tok.kind
    while kind != ENDL:
        if kind == IDENT or kind == LPAREN:
            if kind == LPAREN:
                ident = lexer.check(take_nw(tok), frozenset({IDENT}))
                op = lexer.check(take_nw(tok), frozenset({OP, RPAREN}))
                if op.kind == OP and op.value != "=":
                    raise lexer.error(f"expected '=' or ')' in a filter, found "
                                      f"{op.value!r}", op.pos)
                if op.kind == RPAREN:
                    word = Word(ident.value)
                else:
                    value = lexer.check(take_nw(tok), frozenset({IDENT, STRING}))
                    lexer.check(take_nw(tok), frozenset({RPAREN}))
                    word = Word(value.value, ident.value)
            else:
                word = Word(tok.value)
            if dots == 1:
                con_filter.append(word)
            elif dots == 2:
                and_filter.append(tuple(con_filter))
                con_filter = [word]
            else:
                raise lexer.error("expected '.' or '..' between the words of "
                                  "a filter" if dots == 0 else
                                  "too many '.' in a filter (use '.' or '..')",
                                  tok.pos)
            dots = 0
        elif kind == DOT:
            dots += 1
        elif kind == COMMA or kind == WHITE:
            if dots > 0:
                raise lexer.error("expected a name between '.' and ',' (or "
                                  "a space) in a filter" if pos > 1 else
                                  "a filter cannot start with ',' or a space",
                                  tok.pos)
            if and_filter:
                if con_filter:
                    and_filter.append(tuple(con_filter))
                    con_filter = []
                alternatives.append(tuple(and_filter))
                and_filter = []
            elif con_filter:
                alternatives.append((tuple(con_filter),))
                con_filter = []
            dots = 1
            while True:
                if pos >= n:
                    raise lexer.error("incomplete filter", words[-1].pos)
                tok = words[pos]
                pos += 1
                if tok.kind != WHITE:
                    break
            kind = tok.kind
            if kind not in _FILTER_AFTER_OR:
                lexer.check(tok, _FILTER_AFTER_OR)
            continue
        if pos >= n:
            raise lexer.error("incomplete filter", words[-1].pos)
        tok = words[pos]
        pos += 1
        kind = tok.kind
        if kind not in _FILTER_NEXT:
            lexer.check(tok, _FILTER_NEXT)
    if and_filter:
        if con_filter:
            and_filter.append(tuple(con_filter))
            con_filter = []
        alternatives.append(tuple(and_filter))
    if con_filter:
        alternatives.append((tuple(con_filter),))
    return Filter(None, tuple(alternatives))


def check_filter(lexer: Lexer, lfilter: Filter, tokens: Sequence[Tok]) -> Filter:
    """Mark a filter with an empty chain (``a, .b`` or ``a, ..b``): the
    reference fails on it (IndexError) when it evaluates that alternative;
    here it is a ConfigSyntaxError then."""
    if any(not chain for term in lfilter.terms for chain in term):
        pos = tokens[0].pos if tokens else 0
        for prev, tok in zip(tokens, tokens[1:]):
            if prev.kind in (COMMA, WHITE) and tok.kind == DOT:
                pos = tok.pos
                break
        lfilter.broken = lexer.error("a '.' or '..' right after ',' (or a "
                                     "space) leaves an empty name in the "
                                     "filter", pos)
    return lfilter


Opener = Callable[[str], str]


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


class _Block:
    """The statements of one block being read, with the reference's
    "pre_dict": a run of plain assignments kept as one `Batch`."""

    def __init__(self, lexer: Lexer, content: list[Item]) -> None:
        self.lexer = lexer
        self.content = content
        self.pre_dict: dict[str, str] = {}
        self.pre_loc: Optional[Loc] = None
        self.pre_lines: dict[str, tuple[Line, int]] = {}

    def flush(self) -> None:
        if self.pre_dict:
            assert self.pre_loc is not None
            self.content.append(Batch(self.pre_dict, self.pre_loc,
                                      self.pre_lines))
            self.pre_dict = {}
            self.pre_loc = None
            self.pre_lines = {}

    def assign(self, key: str, op: str, value: str, line: Line, pos: int) -> None:
        """``key op value`` (value as read: outer quotes still on)."""
        if "(" in key:
            log.warning("%s:%d: %r is read as an assignment to the key %r (an "
                        "operator comes before the ':'), as the reference "
                        "parser does; a (variants=name) filter cannot open a "
                        "conditional block", self.lexer.filename, line.number,
                        line.raw.strip(), key)
        if value and (value[0] == value[-1] == '"'
                      or value[0] == value[-1] == "'"):
            value = value[1:-1]
        plain = "$" not in value
        pre_dict = self.pre_dict
        if op == "=" and plain:
            if key not in ops.RESERVED:
                if self.pre_loc is None:
                    self.pre_loc = Loc(self.lexer.filename, line.number,
                                       line.offset + pos + 1, line.raw)
                pre_dict[key] = value
                self.pre_lines[key] = (line, pos)
        elif pre_dict and key in pre_dict and plain:
            # the reference applies it to its pending plain assignments
            # only (it matters for ?= and friends)
            try:
                ops.assign(pre_dict, op, key, value)  # type: ignore[arg-type]
            except ConfigSyntaxError as err:
                raise self.lexer.error(err.message, pos) from None
        else:
            self.flush()
            self.content.append(Assign(op, key, value, Loc(
                self.lexer.filename, line.number, line.offset + pos + 1,
                line.raw)))

    def assignments(self, prev_indent: int) -> None:
        """Read the following lines of the block while they are assignments
        read the fast way (the reference's test, inlined: no statement
        keyword, an operator and no ':' up to its end)."""
        lexer = self.lexer
        reader = lexer.reader
        lines = reader.lines
        i = reader.index
        n = len(lines)
        search = _OPS_RE.search
        while i < n:
            line = lines[i]
            if line.indent <= prev_indent:
                break
            text = line.text
            if text[0] in _KEYWORD_STARTS and _keyword(text):
                break
            m = search(text)
            if m is None:
                break
            end = m.end()
            colon = text.find(":")
            if 0 <= colon <= end:
                break
            i += 1
            reader.index = i
            lexer.line = line
            self.assign(text[:m.start()].rstrip(), m.group(),
                        text[end:].lstrip(), line, 0)
        reader.index = i


class TreeBuilder:
    """Reads texts into the variant tree, as the reference's ``_parse``."""

    def __init__(self, defaults: bool = False,
                 expand_defaults: Sequence[str] = (),
                 opener: Opener = _read_file, lazy: bool = True) -> None:
        self.defaults = defaults
        self.expand_defaults = tuple(expand_defaults)
        self._open = opener
        self.lazy = lazy        # entries' bodies read when entered (bodyscan)
        self._including: list[str] = []

    def parse_text(self, text: str, node: Node, filename: str = STRING_FILE,
                   is_file: bool = False) -> Node:
        """Read `text` into the scope `node`; return the new scope node."""
        lexer = Lexer(Reader(text, filename, is_file))
        return self._parse(lexer, node, -1)

    def parse_file(self, path: str, node: Node) -> Node:
        try:
            text = self._open(path)
        except OSError as err:
            raise ConfigSyntaxError(f"cannot read config file: {err}",
                                    path) from err
        except UnicodeDecodeError as err:
            raise ConfigSyntaxError(f"cannot decode config file: {err}",
                                    path) from err
        return self._include(text, path, node)

    def _include(self, text: str, path: str, node: Node) -> Node:
        real = os.path.realpath(path)
        if real in self._including:
            raise ConfigSyntaxError(f"include loop: {path} includes itself",
                                    path)
        self._including.append(real)
        try:
            return self.parse_text(text, node, path, True)
        finally:
            self._including.pop()

    # -- the reference's _parse ------------------------------------------

    def _parse(self, lexer: Lexer, node: Node, prev_indent: int,
               in_cond: Optional[Cond] = None) -> Node:
        """Statements of the block deeper than prev_indent into `node`
        (or into the conditional block `in_cond`); the new scope node."""
        block = _Block(lexer, in_cond.body if in_cond is not None
                       else node.content)
        allowed = _BLOCK_ALLOWED
        var_indent = 0
        var_name = ""
        meta: dict[str, list[object]] = {}
        var_loc: Optional[Loc] = None
        lexer.fast = True
        suffix: Optional[Suffix] = None
        flush = block.flush

        while True:
            lexer.prev_indent = prev_indent
            if allowed is _BLOCK_ALLOWED and lexer.fast and lexer.idle():
                block.assignments(prev_indent)
            tok = lexer.next_check(_INDENT_ALLOWED)
            if tok.kind == ENDBLOCK:
                flush()
                if suffix is not None:
                    block.content.append(suffix)
                return node
            indent = tok.pos
            if allowed is _BLOCK_ALLOWED:
                simple = lexer.simple_condition()
                if simple is not None:
                    cfilter, cond_rest, rest_pos = simple
                    self._cond_body(lexer, node, False, cfilter, indent, 0,
                                    cond_rest, rest_pos, block.content, flush)
                    continue
            tok = lexer.next_check(allowed)
            kind = tok.kind

            if kind == IDENT:
                rest = lexer.until_no_white(_IDENT_END)
                last = rest[-1]
                if last.kind == OP:
                    if len(rest) == 1:
                        key = tok.value
                    else:
                        key = "".join(t.text() for t in [tok] + rest[:-1])
                    value_tok = lexer.next_check(frozenset({STRING}))
                    block.assign(key, last.value, value_tok.value, lexer.line,
                                 tok.pos)
                    lexer.next_check(_ENDL)
                elif last.kind == COLON:
                    ftoks = [tok] + rest[:-1]
                    cfilter = check_filter(lexer, parse_filter(lexer, ftoks),
                                           ftoks)
                    self._cond(lexer, node, False, cfilter, indent, tok.pos,
                               block.content, flush)
                else:
                    raise lexer.error("expected an operator (= += <= ~= ?= "
                                      "?+= ?<=) or ':' after "
                                      f"{tok.value!r}", last.pos)

            elif kind == VARIANT:
                flush()
                assert var_loc is not None      # VARIANT follows 'variants'
                node = self._entries(lexer, node, indent, var_indent, var_name,
                                     meta, var_loc)
                block.content = node.content
                allowed = _BLOCK_ALLOWED

            elif kind == VARIANTS:
                if in_cond is not None:
                    raise lexer.error("'variants' is not allowed inside a "
                                      "conditional block", tok.pos)
                lexer.fast = False
                var_loc = lexer.loc(tok.pos)
                var_name = self._variants_line(lexer, meta)
                allowed = _VARIANTS_ALLOWED
                var_indent = indent

            elif kind in (ONLY, NO):
                toks = lexer.rest_line()
                lfilter = check_filter(lexer, parse_filter(lexer, toks), toks)
                flush()
                block.content.append(OnlyNo(kind == ONLY, lfilter, lexer.loc(tok.pos)))

            elif kind == JOIN:
                toks = lexer.rest_line()
                lfilter = check_filter(lexer, parse_filter(lexer, toks), toks)
                flush()
                factors = []
                for term in lfilter.terms:      # one `only` per alternative
                    factor = Filter(None, (term,))
                    if not all(term):
                        factor.broken = lfilter.broken
                    factors.append(factor)
                block.content.append(Join(tuple(factors), lexer.loc(tok.pos)))

            elif kind == SUFFIX:
                flush()
                name = lexer.next_check(frozenset({IDENT}))
                end = lexer.next()
                if end.kind == WHITE:
                    raise lexer.error("nothing may follow 'suffix NAME', "
                                      "not even a space before a comment (as "
                                      "the reference reads it)", end.pos)
                lexer.check(end, _ENDL)
                suffix = Suffix(name.value, lexer.loc(name.pos))

            elif kind == INCLUDE:
                path_tok = lexer.rest_as_string_token()
                node = self._include_stmt(lexer, node, path_tok, flush, in_cond)
                if in_cond is None:
                    block.content = node.content
                lexer.prev_indent = prev_indent

            elif kind == DEL:
                name = lexer.next_check_nw(frozenset({IDENT}))
                lexer.next_check_nw(_ENDL)
                flush()
                block.content.append(Delete(name.value, lexer.loc(tok.pos)))

            else:           # NOTCOND
                toks = lexer.until_no_white(frozenset({COLON, ENDL}))
                if toks[-1].kind != COLON:
                    raise lexer.error("expected ':' after the filter of a "
                                      "'!filter:' block", toks[-1].pos)
                lfilter = check_filter(lexer, parse_filter(lexer, toks[:-1]),
                                       toks[:-1])
                self._cond(lexer, node, True, lfilter, indent, tok.pos,
                           block.content, flush)
                lexer.prev_indent = prev_indent

    def _cond(self, lexer: Lexer, node: Node, negative: bool, cfilter: Filter,
              indent: int, pos: int, content: list[Item],
              flush: Callable[[], None]) -> None:
        rest = lexer.rest_as_string_token()
        self._cond_body(lexer, node, negative, cfilter, indent, pos,
                        rest.value, rest.pos, content, flush)

    def _cond_body(self, lexer: Lexer, node: Node, negative: bool,
                   cfilter: Filter, indent: int, pos: int, rest: str,
                   rest_pos: int, content: list[Item],
                   flush: Callable[[], None]) -> None:
        """A conditional block: the rest of its line (`rest`), if any, is
        its first statement, then the lines deeper than its own."""
        line = lexer.line
        if rest != "":
            lexer.reader.store(rest, indent + 1, line.number,
                               line.offset + rest_pos, line.raw)
        cond = Cond(negative, cfilter, lexer.loc(pos))
        self._parse(lexer, node, indent, cond)
        flush()
        content.append(cond)

    def _variants_line(self, lexer: Lexer, meta: dict[str, list[object]]) -> str:
        """``variants [name] [meta...]:``; returns the name ("" if none)."""
        toks = lexer.until_no_white(_VARIANTS_IN)
        tok = toks[-1]
        var_name = ""
        meta.clear()
        first = True
        default_pos = -1
        while tok.kind not in (COLON, ENDL):
            if tok.kind == IDENT:
                if var_name != "":
                    raise lexer.error("expected '[' or ':' after the name of "
                                      "a variants block", tok.pos)
                if first:
                    # the reference names the block after the first token,
                    # whatever it is ("variants (x:" is named "(")
                    var_name = toks[0].text()
                else:
                    # after a [meta] the reference takes a token *class*
                    # for the name: as it prints
                    log.warning("%s:%d: the name of a variants block must "
                                "come before its [meta] options (read as the "
                                "reference does)", lexer.filename,
                                lexer.line.number)
                    var_name = _CLASS_NAME
            elif tok.kind == LBRACKET:
                ident = lexer.next_check_nw(frozenset({IDENT}))
                if ident.value == "default" and default_pos < 0:
                    default_pos = ident.pos
                op = lexer.next_check_nw(frozenset({OP, RBRACKET}))
                if op.kind == OP and op.value != "=":
                    raise lexer.error(f"expected '=' or ']', found {op.value!r}",
                                      op.pos)
                if op.kind == RBRACKET:
                    meta.setdefault(ident.value, []).append(True)
                else:
                    vals = lexer.until_no_white(frozenset({RBRACKET, ENDL}))
                    if vals[-1].kind != RBRACKET:
                        raise lexer.error("expected ']'", vals[-1].pos)
                    meta.setdefault(ident.value, []).append(
                        [t.value if t.kind in (IDENT, STRING) else
                         _DOT_MARK if t.kind == DOT else object()
                         for t in vals[:-1]])
            tok = lexer.next_check_nw(_VARIANTS_IN)
            first = False
        for wd in meta.get("default", []):
            if not isinstance(wd, list):
                raise lexer.error("expected [default=name]", default_pos)
        if tok.kind == ENDL:
            raise lexer.error("expected ':' at the end of a variants line",
                              tok.pos)
        lexer.next_check_nw(_ENDL)
        return var_name

    def _entries(self, lexer: Lexer, node: Node, indent: int, var_indent: int,
                 var_name: str, meta: dict[str, list[object]],
                 var_loc: Loc) -> Node:
        """The ``- name: deps`` entries of a variants block."""
        already_default = False
        defaults_meta: Optional[list[object]] = meta.get("default")
        expandable = var_name not in self.expand_defaults
        container = Node()
        while True:
            lexer.prev_indent = var_indent
            tok = lexer.next_check_nw(_ENTRY_FIRST)
            if tok.kind == ENDBLOCK:
                break
            if tok.kind == INDENT:
                lexer.next_check_nw(_VARIANTS_ALLOWED)
                tok = lexer.next_check_nw(frozenset({IDENT, DEFAULT}))
            entry_pos = tok.pos
            if tok.kind == DEFAULT:
                is_default = True
                toks = lexer.until_check(_NAME_PARTS, frozenset({COLON}))
            else:
                is_default = False
                toks = [tok] + lexer.until_check(_NAME_PARTS, frozenset({COLON}))
            raw_name = toks[:-1]
            names = [t.value for t in raw_name if t.kind == IDENT]
            entry_loc = lexer.loc(entry_pos)
            filename = lexer.filename
            tok = lexer.next()
            while tok.kind == WHITE:
                tok = lexer.next()
            deps: tuple[tuple[str, ...], ...] = ()
            if tok.kind != ENDL:
                dep_toks = [tok] + lexer.until(_ENDL)[:-1]
                dfilter = parse_filter(lexer, dep_toks)
                deps = tuple(tuple(w.key for w in chain)
                             for term in dfilter.terms for chain in term)

            entry = self._entry_body(lexer, node, indent, Assign(
                "=", var_name, ".".join(names), entry_loc) if var_name else None)
            if var_name:
                entry.var = var_name
                entry.labels = tuple(Label(n, var_name) for n in names)
            else:
                entry.labels = tuple(Label(n) for n in names)
            entry.deps = deps
            entry.filename = filename

            if defaults_meta is not None:
                raw = [t.value if t.kind == IDENT else _DOT_MARK
                       for t in raw_name]
                for wd in defaults_meta:       # as the reference: a prefix
                    assert isinstance(wd, list)
                    if all(a == b for a, b in zip(wd, raw)):
                        is_default = True
                        defaults_meta.remove(wd)
            if is_default and not already_default and expandable:
                entry.default = True
                already_default = True
            entry.append_to_shortname = not is_default
            short_file = (filename if filename == STRING_FILE
                          else os.path.basename(filename))
            entry.content.append(FileMap(
                short_file, ".".join(lb.text for lb in entry.labels),
                ".".join(lb.name for lb in entry.labels)))
            if entry.default and self.defaults:
                container.children.insert(0, entry)
            else:
                container.children.append(entry)
        if defaults_meta:
            wanted = " ".join("".join(v if isinstance(v, str) else "."
                                      for v in wd)  # type: ignore[attr-defined]
                              for wd in defaults_meta)
            raise ConfigSyntaxError(
                f"no entry of the variants block matches [default={wanted}]",
                var_loc.filename, var_loc.line, var_loc.column, var_loc.text)
        return container

    def _entry_body(self, lexer: Lexer, scope: Node, indent: int,
                    var: Optional[Assign]) -> Node:
        """An entry's body (the lines deeper than `indent`): read now, or,
        when `bodyscan` can index it, skipped and read when entered."""
        reader = lexer.reader
        found = (bodyscan.scan(reader.lines, reader.index, indent, reader.indexes)
                 if self.lazy and lexer.idle() else None)
        if found is None:
            return self._read_body(lexer, scope, indent, var)
        body = reader.view(reader.index)
        reader.index = found.end
        lexer.fast = True       # as after reading a body of plain lines
        entry = Node()
        entry.lazy = Lazy(scope, found.keys, found.words, functools.partial(
            self._read_later, body, scope, indent, var))
        return entry

    def _read_body(self, lexer: Lexer, scope: Node, indent: int,
                   var: Optional[Assign]) -> Node:
        child = Node([scope])
        if var is not None:
            child.content.append(var)
        return self._parse(lexer, child, indent)

    def _read_later(self, reader: Reader, scope: Node, indent: int,
                    var: Optional[Assign], entry: Node) -> None:
        """Read a lazy entry's body into it (its content goes before the
        file map the entry holds)."""
        body = self._read_body(Lexer(reader), scope, indent, var)
        entry.content[:0] = body.content
        entry.children = body.children

    def _include_stmt(self, lexer: Lexer, node: Node, path_tok: Tok,
                      flush: Callable[[], None], in_cond: Optional[Cond]) -> Node:
        path = os.path.expanduser(path_tok.value)
        if lexer.reader.is_file and not os.path.isabs(path):
            path = os.path.join(os.path.dirname(lexer.filename), path)
        if not os.path.isfile(path):
            raise MissingIncludeError(path, lexer.filename, lexer.line.number,
                                      lexer.line.offset + path_tok.pos + 1,
                                      lexer.line.raw)
        flush()
        try:
            text = self._open(path)
        except (OSError, UnicodeDecodeError) as err:
            raise lexer.error(f"cannot read included file {path}: {err}",
                              path_tok.pos) from err
        real = os.path.realpath(path)
        if real in self._including:
            raise lexer.error(f"include loop: {path} is already being read",
                              path_tok.pos)
        self._including.append(real)
        try:
            reader = Reader(text, path, True)
            reader.wrap_top_level_entries()   # tp-qemu's test cfgs: entries only
            sub = Lexer(reader)
            if in_cond is not None:
                self._parse(sub, Node(), -1, in_cond)
                return node
            return self._parse(sub, node, -1)
        finally:
            self._including.pop()


class _DotMark:
    """The ``.`` between the parts of a name in ``[default=a.b]``: equal to
    nothing but another dot (as the reference's tokens compare)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _DotMark)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "."


_DOT_MARK = _DotMark()
