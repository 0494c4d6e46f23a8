"""The assignment operators of the Cartesian format.

``=`` set, ``+=`` append, ``<=`` prepend, ``~=`` set only if the key is
unset; ``?=``, ``?+=``, ``?<=`` treat the key as a regular expression that
must match a whole existing key, and set/append/prepend every key it
matches; ``del`` removes a key.  ``${key}`` in a value is replaced by the
key's current value when the statement applies, left to right, stopping at
the first unset key (like the reference parser).
"""

from __future__ import annotations

import functools
import re

_SUBST_RE = re.compile(r"\$\{(.+?)\}")


def substitute(value: str, values: dict[str, str]) -> str:
    """Replace ``${key}`` references left to right by their values; at the
    first unset key stop, leaving it and the rest of the value as written
    (the reference parser's behaviour).  Inserted values are not rescanned."""
    if "${" not in value:
        return value
    out: list[str] = []
    pos = 0
    for m in _SUBST_RE.finditer(value):
        found = values.get(m.group(1))
        if found is None:
            break
        out.append(value[pos:m.start()])
        out.append(str(found))
        pos = m.end()
    out.append(value[pos:])
    return "".join(out)


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
        new = substitute(value, values)
        for existing in [k for k in values if pattern.fullmatch(k)]:
            if op == "?=":
                values[existing] = new
            elif op == "?+=":
                values[existing] = values[existing] + new
            else:
                values[existing] = new + values[existing]


def delete(values: dict[str, str], key: str) -> None:
    values.pop(key, None)
