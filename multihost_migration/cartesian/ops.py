"""The assignment operators of the Cartesian format.

``=`` set, ``+=`` append, ``<=`` prepend, ``~=`` set only if the key is
unset; ``?=``, ``?+=``, ``?<=`` treat the key as a regular expression that
must match a whole existing key, and set/append/prepend every key it
matches; ``del`` removes a key.  ``${key}`` in a value is replaced by the
key's current value when the statement applies (all or nothing: one unset
key leaves the value as written, like the reference parser).
"""

from __future__ import annotations

import functools
import re

_SUBST_RE = re.compile(r"\$\{(\w+)\}")


def substitute(value: str, values: dict[str, str]) -> str:
    """Replace every ``${key}`` (key of word characters) by its value; if
    any such key is unset, the value is left entirely unchanged."""
    if "${" not in value:
        return value
    refs = _SUBST_RE.findall(value)
    if not refs or any(ref not in values for ref in refs):
        return value
    return _SUBST_RE.sub(lambda m: str(values[m.group(1)]), value)


@functools.lru_cache(maxsize=4096)
def _key_regex(key: str) -> re.Pattern[str]:
    return re.compile(key)


def assign(values: dict[str, str], op: str, key: str, value: str) -> None:
    """Apply `key op value` to `values`."""
    if op == "=":
        values[key] = substitute(value, values)
    elif op == "+=":
        values[key] = values.get(key, "") + substitute(value, values)
    elif op == "<=":
        values[key] = substitute(value, values) + values.get(key, "")
    elif op == "~=":
        if key not in values:
            values[key] = substitute(value, values)
    else:
        pattern = _key_regex(key)
        for existing in [k for k in values if pattern.fullmatch(k)]:
            new = substitute(value, values)
            if op == "?=":
                values[existing] = new
            elif op == "?+=":
                values[existing] = values[existing] + new
            else:
                values[existing] = new + values[existing]


def delete(values: dict[str, str], key: str) -> None:
    values.pop(key, None)
