"""`Params`: the test parameters mapping handed to scenarios.

Values parsed from Cartesian configs are strings; the runtime also stores a
few non-string values (``params["hosts"]`` is a list of host ids).  Typed
getters convert on read and raise ConfigError naming the key and its value.
``object_params(name)`` returns the view for one object (host, VM, image):
every ``key_<name>`` overrides ``key``.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Optional

from multihost_migration.errors import ConfigError

log = logging.getLogger(__name__)

_TRUE = frozenset({"yes", "y", "true", "on", "1"})
_FALSE = frozenset({"no", "n", "false", "off", "0", ""})
_MISSING: Any = object()


def parse_bool(value: Any, what: str) -> bool:
    """The one yes/no rule of the suite: yes/no, y/n, true/false, on/off,
    1/0 (any case; empty is no).  `what` names the value in the ConfigError
    (e.g. "parameter 'heartbeat'", "vm1: image_readonly")."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{what}={value!r}: expected yes or no (or true/false, "
                      f"on/off, 1/0)")


#: Lists whose items name objects that become directory and file names (logs
#: under <vm>/, QEMU files): each item must be a plain, safe file name.
NAME_LISTS = frozenset({"vms"})
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _checked_names(key: str, names: list[str]) -> list[str]:
    if key in NAME_LISTS:
        for name in names:
            if not _NAME.fullmatch(name) or name in (".", ".."):
                raise ConfigError(f"parameter {key!r}: {name!r} is not a valid name "
                                  "(letters, digits, _ . - only; not '.' or '..')")
    return names


class Params(dict[str, Any]):
    """A dict of test parameters with per-object views and typed getters."""

    def __repr__(self) -> str:
        return f"Params({dict.__repr__(self)})"

    def objects(self, key: str) -> list[str]:
        """The space-separated list in `key` (``vms = vm1 vm2``); [] if unset.
        A value that is already a list is returned as a list of str."""
        value = self.get(key, "")
        if isinstance(value, (list, tuple)):
            return _checked_names(key, [str(v) for v in value])
        if not isinstance(value, str):
            raise ConfigError(f"parameter {key!r} must be a space-separated "
                              f"list, got {value!r}")
        return _checked_names(key, value.split())

    def object_params(self, obj_name: str) -> "Params":
        """A copy where each ``key_<obj_name>`` value overrides ``key``."""
        suffix = "_" + obj_name
        result = Params(self)
        for key, value in self.items():
            if key.endswith(suffix) and len(key) > len(suffix):
                result[key[:-len(suffix)]] = value
        return result

    def _raw(self, key: str, default: Any) -> Any:
        if key in self:
            return self[key]
        if default is _MISSING:
            raise ConfigError(f"required parameter {key!r} is not set")
        return default

    def get_int(self, key: str, default: Any = _MISSING) -> int:
        """`key` as an int (decimal, or 0x/0o/0b prefixed)."""
        value = self._raw(key, default)
        if isinstance(value, bool):
            raise ConfigError(f"parameter {key!r} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip(), 0)
        except ValueError as err:
            raise ConfigError(f"parameter {key!r} must be an integer, "
                              f"got {value!r}") from err

    def get_float(self, key: str, default: Any = _MISSING) -> float:
        """`key` as a float."""
        value = self._raw(key, default)
        if isinstance(value, bool):
            raise ConfigError(f"parameter {key!r} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(str(value).strip())
        except ValueError as err:
            raise ConfigError(f"parameter {key!r} must be a number, "
                              f"got {value!r}") from err

    def get_bool(self, key: str, default: Any = _MISSING) -> bool:
        """`key` as a bool: yes/no, true/false, on/off, 1/0 (any case)."""
        return parse_bool(self._raw(key, default), f"parameter {key!r}")

    def get_list(self, key: str, default: Any = _MISSING,
                 sep: Optional[str] = None) -> list[str]:
        """`key` split on `sep` (whitespace by default)."""
        value = self._raw(key, default)
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        if not isinstance(value, str):
            raise ConfigError(f"parameter {key!r} must be a list, got {value!r}")
        return [v.strip() for v in value.split(sep) if v.strip()] if sep \
            else value.split()
