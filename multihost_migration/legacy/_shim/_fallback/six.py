"""A minimal `six` for legacy tests where none is installed (Python 3 only)."""
from typing import Any, Iterator

PY2 = False
PY3 = True
string_types = (str,)
integer_types = (int,)
text_type = str
binary_type = bytes


def iteritems(d: Any) -> Iterator[Any]:
    return iter(d.items())


def itervalues(d: Any) -> Iterator[Any]:
    return iter(d.values())


def iterkeys(d: Any) -> Iterator[Any]:
    return iter(d.keys())
