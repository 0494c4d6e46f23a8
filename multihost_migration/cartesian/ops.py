"""What the statements of the Cartesian format do to a dict.

``=`` set, ``+=`` append, ``<=`` prepend, ``~=`` set only if the key is
unset; ``?=``, ``?+=``, ``?<=`` treat the key as a regular expression that
must match an existing key from its start to its end (``re.match`` of
``key + "$"``, so ``a|b`` means "starts with a, or is b", as in the
reference parser), and set/append/prepend every key it matches; ``del``
removes the keys its name matches the same way.  ``${key}`` in a value is
replaced by the key's current value when the statement applies, left to
right, stopping at the first unset key (like the reference parser); the
reserved keys (`RESERVED`: ``name``, ``shortname``, ``dep`` and the file
maps) can be read so but not assigned, deleted or suffixed.

``suffix _x`` renames every key ``k`` to ``k`` + ``_x``; until the dict is
finished such a key is kept as the tuple ``("k", "_x")`` so that
`drop_suffixes` can drop suffixes that carry no information (see there).
Substitution sees the keys as `drop_suffixes` shows them; the regular
expressions of ``?=`` and ``del`` see ``"".join(key)``.

A finished dict also gets the reference's `postfix_parse`: ``k_max``,
``k_min`` and ``k_fixed`` set ``k``.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping, Optional, Union

from multihost_migration.cartesian.model import RESERVED as RESERVED
from multihost_migration.errors import ConfigError, ConfigSyntaxError

Key = Union[str, tuple[str, ...]]
Values = dict[Key, Any]


_SUBST_RE = re.compile(r"\$\{(.+?)\}")
_LITERAL = re.compile(r"[A-Za-z0-9_\-]*")


def substitute(value: str, values: Mapping[Key, Any],
               suffixed: bool = False) -> str:
    """Replace ``${key}`` references left to right by their values; at the
    first unset key stop, leaving it and the rest of the value as written
    (the reference parser's behaviour).  Inserted values are not rescanned.
    With suffixed keys present, keys are looked up as `drop_suffixes`
    names them."""
    if "$" not in value:
        return value
    lookup: Mapping[Key, Any] = drop_suffixes(values) if suffixed else values
    out: list[str] = []
    pos = 0
    for m in _SUBST_RE.finditer(value):
        found = lookup.get(m.group(1), _MISSING)
        if found is _MISSING:
            break
        out.append(value[pos:m.start()])
        out.append(str(found))
        pos = m.end()
    out.append(value[pos:])
    return "".join(out)


_MISSING = object()


@functools.lru_cache(maxsize=4096)
def key_regex(key: str) -> re.Pattern[str]:
    """The expression of a ``?=``-style key or ``del``: ``re.match`` of
    key + ``$``; a bad expression is a ConfigSyntaxError."""
    try:
        return re.compile(key + "$")
    except re.error as err:
        raise ConfigSyntaxError(f"bad regular expression {key!r} in a key: "
                                f"{err}") from None


def _text(key: Key) -> str:
    return key if isinstance(key, str) else "".join(key)


def assign(values: Values, op: str, key: str, value: str,
           suffixed: bool = False) -> None:
    """Apply `key op value` to `values` (as the reference's operators)."""
    if op == "=":
        if key not in RESERVED:
            values[key] = substitute(value, values, suffixed)
    elif op == "+=":
        if key not in RESERVED:
            values[key] = values.get(key, "") + substitute(value, values, suffixed)
    elif op == "<=":
        if key not in RESERVED:
            values[key] = substitute(value, values, suffixed) + values.get(key, "")
    elif op == "~=":
        if key not in RESERVED and key not in values:
            values[key] = substitute(value, values, suffixed)
    else:
        match = key_regex(key).match
        new = substitute(value, values, suffixed)
        for existing in values:
            if existing in RESERVED or not match(_text(existing)):
                continue
            if op == "?=":
                values[existing] = new
            elif op == "?+=":
                values[existing] = values[existing] + new
            else:
                values[existing] = new + values[existing]


def assign_targets(values: Values, op: str, targets: tuple[str, ...],
                   value: str) -> None:
    """``?=``, ``?+=`` or ``?<=`` on a dict with no suffixed keys, given
    every key the expression can match (`targets`)."""
    new = substitute(value, values)
    for key in targets:
        if key in values:
            if op == "?=":
                values[key] = new
            elif op == "?+=":
                values[key] = values[key] + new
            else:
                values[key] = new + values[key]


def delete(values: Values, key: str, suffixed: bool = True) -> None:
    """``del key``: every non-reserved key the expression matches (with
    no suffixed keys and no special character in it: the key itself)."""
    if not suffixed and _LITERAL.fullmatch(key):
        if key not in RESERVED:
            values.pop(key, None)
        return
    match = key_regex(key).match
    for existing in [k for k in values
                     if k not in RESERVED and match(_text(k))]:
        del values[existing]


def add_suffix(values: Values, suffix: str) -> None:
    """``suffix``: every non-reserved key gets `suffix` appended (kept as a
    tuple) and moves after the others, as in the reference."""
    for key in list(values):
        if key in RESERVED:
            continue
        new_key = (key, suffix) if isinstance(key, str) else key + (suffix,)
        values[new_key] = values.pop(key)


def add_file_map(values: Values, file: str, name: str, short: str) -> None:
    """An entry's names under its file in ``_name_map_file`` and
    ``_short_name_map_file`` (outer entries' names go in front).  The maps
    are replaced, never changed in place: dicts may share them."""
    for dest, val in (("_name_map_file", name), ("_short_name_map_file", short)):
        old = values.get(dest)
        if old is None:
            values[dest] = {file: val}
        else:
            new = dict(old)
            new[file] = f"{val}.{old[file]}" if file in old else val
            values[dest] = new


def drop_suffixes(d: Mapping[Key, Any]) -> dict[Key, Any]:
    """A copy of `d` with suffixed keys made strings (the reference's
    ``_drop_suffixes``): a suffixed key whose value equals the plain key's
    is dropped; one whose value all keys of the same base name share
    becomes the base name; any other becomes the base name followed by
    its suffixes, innermost block's first."""
    flat: dict[Key, Any] = dict(d)
    for key in d:
        if isinstance(key, str):
            continue
        value = d[key]
        base = key[0]
        if base in d and d[base] == value:
            flat.pop(key)
            continue
        same = True
        for k in d:
            if (k[0] if isinstance(k, tuple) else k) == base and d[k] != value:
                same = False
                break
        new_key = base if same else base + "".join(reversed(key[1:]))
        flat[new_key] = flat.pop(key)
    return flat


def _data_size(size: str, default_suffix: str = "B") -> int:
    orders = {"B": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
    order = re.findall("([BbKkMmGgTt])", size[-1])
    if not order:
        size += default_suffix
        order = [default_suffix]
    return int(float(size[0:-1]) * orders[order[0].upper()])


def compare_sizes(str1: str, str2: str) -> int:
    """-1, 0 or 1 as the numbers (sizes with a unit) compare (the
    reference's ``compare_string``)."""
    order1 = re.findall("([BbKkMmGgTt])", str1)
    order2 = re.findall("([BbKkMmGgTt])", str2)
    if order1 or order2:
        value1 = _data_size(str1, "M")
        value2 = _data_size(str2, "M")
    else:
        value1 = int(str1)
        value2 = int(str2)
    return -1 if value1 < value2 else 0 if value1 == value2 else 1


POSTFIXES = ("_max", "_min", "_fixed")


class PostfixError(ConfigError):
    """A ``k_max``/``k_min`` value that cannot be compared with ``k``'s."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def postfix_parse(d: Values, keys: Optional[frozenset[str]] = None) -> None:
    """``k_max`` sets ``k`` if larger, ``k_min`` if smaller, ``k_fixed``
    always (the reference's ``postfix_parse``).  `keys`, if given, holds
    every key `d` may have that ends so (a shortcut)."""
    order: Any = d
    if keys is not None:
        present = [k for k in keys if k in d]
        if not present:
            return
        if len(present) > 1:
            order = [k for k in d if k in keys]
        else:
            order = present
    found: dict[str, Any] = {}
    for key in order:
        if not isinstance(key, str):
            continue
        try:
            if key.endswith("_max"):
                base = key.split("_max")[0]
                if base not in d or compare_sizes(d[base], d[key]) > 0:
                    found[base] = d[key]
            elif key.endswith("_min"):
                base = key.split("_min")[0]
                if base not in d or compare_sizes(d[base], d[key]) < 0:
                    found[base] = d[key]
            elif key.endswith("_fixed"):
                found[key.split("_fixed")[0]] = d[key]
        except (ValueError, TypeError, IndexError, AttributeError) as err:
            base = key.rsplit("_", 1)[0]
            raise PostfixError(key, f"{key} = {d[key]!r} cannot be compared "
                               f"with {base} = {d.get(base)!r} ({err})") from None
    for key, value in found.items():
        d[key] = value


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
    try:
        p1 = re.sub("^" + prefix, "", n1)
        p2 = re.sub("^" + prefix, "", n2)
    except re.error as err:
        raise ConfigError(f"join: cannot merge the names {n1!r} and "
                          f"{n2!r}: {err}") from None
    return prefix + p1 + p2 if prefix else p1 + "." + p2
