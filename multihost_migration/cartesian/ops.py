"""The assignment operators of the Cartesian format.

``=`` set, ``+=`` append, ``<=`` prepend, ``~=`` set only if the key is
unset; ``?=``, ``?+=``, ``?<=`` treat the key as a regular expression that
must match an existing key from its start to its end (``re.match`` of
``key + "$"``, so ``a|b`` means "starts with a, or is b", as in the
reference parser), and set/append/prepend every key it matches; ``del``
removes a key.  ``${key}`` in a value is replaced by the key's current
value when the statement applies, left to right, stopping at the first
unset key (like the reference parser).  Assignments to the reserved keys
(`RESERVED`) are ignored.

``suffix _x`` renames every key ``k`` to ``k`` + ``_x``; until the dict is
finished such a key is kept as the tuple ``("k", "_x")`` so that `flatten`
can drop suffixes that carry no information (see there).  Substitution
and ``del`` see the keys as `flatten` and ``"".join(key)`` show them.
"""

from __future__ import annotations

import functools
import re
from typing import Mapping, Union

Key = Union[str, tuple[str, ...]]
Values = dict[Key, str]

RESERVED = frozenset({"name", "shortname", "dep", "_short_name_map_file",
                      "_name_map_file"})

_SUBST_RE = re.compile(r"\$\{(.+?)\}")


def substitute(value: str, values: Values, suffixed: bool = False) -> str:
    """Replace ``${key}`` references left to right by their values; at the
    first unset key stop, leaving it and the rest of the value as written
    (the reference parser's behaviour).  Inserted values are not rescanned.
    With suffixed keys present, keys are looked up as `flatten` names them."""
    if "${" not in value:
        return value
    lookup: Mapping[Key, object] = flatten(values) if suffixed else values
    out: list[str] = []
    pos = 0
    for m in _SUBST_RE.finditer(value):
        found = lookup.get(m.group(1))
        if found is None:
            break
        out.append(value[pos:m.start()])
        out.append(str(found))
        pos = m.end()
    out.append(value[pos:])
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _key_regex(key: str) -> re.Pattern[str]:
    return re.compile(key + "$")


def _text(key: Key) -> str:
    return key if isinstance(key, str) else "".join(key)


def assign(values: Values, op: str, key: str, value: str,
           suffixed: bool = False) -> None:
    """Apply `key op value` to `values`."""
    if key in RESERVED:
        return
    if op == "=":
        values[key] = substitute(value, values, suffixed)
    elif op == "+=":
        values[key] = values.get(key, "") + substitute(value, values, suffixed)
    elif op == "<=":
        values[key] = substitute(value, values, suffixed) + values.get(key, "")
    elif op == "~=":
        if key not in values:
            values[key] = substitute(value, values, suffixed)
    else:
        match = _key_regex(key).match
        new = substitute(value, values, suffixed)
        for existing in [k for k in values if match(_text(k))]:
            if op == "?=":
                values[existing] = new
            elif op == "?+=":
                values[existing] = values[existing] + new
            else:
                values[existing] = new + values[existing]


def delete(values: Values, key: str, suffixed: bool = False) -> None:
    """``del key`` (a plain name: letters, digits, ``_`` and ``-``)."""
    if not suffixed:
        values.pop(key, None)
        return
    for existing in [k for k in values if _text(k) == key]:
        del values[existing]


def add_suffix(values: Values, suffix: str) -> None:
    """``suffix``: every key gets `suffix` appended (kept as a tuple)."""
    items = [((k, suffix) if isinstance(k, str) else k + (suffix,), v)
             for k, v in values.items()]
    values.clear()
    values.update(items)


def flatten(d: Mapping[Key, object]) -> dict[Key, object]:
    """A copy of `d` with suffixed keys made strings: a suffixed key whose
    value equals the plain key's is dropped; one whose value all keys of
    the same base name share becomes the base name; any other becomes the
    base name followed by its suffixes, innermost block's first."""
    flat: dict[Key, object] = dict(d)
    for key, value in d.items():
        if isinstance(key, str):
            continue
        base = key[0]
        if base in d and d[base] == value:
            del flat[key]
            continue
        same = all(v == value for k, v in d.items()
                   if (k if isinstance(k, str) else k[0]) == base)
        new_key = base if same else base + "".join(reversed(key[1:]))
        del flat[key]
        flat[new_key] = value
    return flat
