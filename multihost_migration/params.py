"""Params: the Cartesian test dict, as users' scenario code sees it.

A dict (values from cfg files are strings; the runtime adds a few typed
values, e.g. `hosts`, a list of host ids) with:

- `object_params(name)`: a copy where `KEY_<name>` overrides `KEY`
  (`mem_vm1`, `image_name_image1`, `accel_host2`);
- `objects(key)`: a space-separated value as a list (`vms` -> ["vm1", "vm2"]);
- typed getters that raise ConfigError naming the key and the bad value.
"""

from __future__ import annotations

from typing import Any, Optional

from multihost_migration.errors import ConfigError

_TRUE = frozenset({"yes", "true", "on", "1", "y"})
_FALSE = frozenset({"no", "false", "off", "0", "n", ""})
_MISSING = object()


class Params(dict[str, Any]):
    """A test's parameters."""

    def object_params(self, name: str) -> "Params":
        """A copy in which `KEY_<name>` overrides `KEY` for every key."""
        suffix = f"_{name}"
        out = Params(self)
        for key, value in self.items():
            if key.endswith(suffix) and len(key) > len(suffix):
                out[key[: -len(suffix)]] = value
        return out

    def objects(self, key: str) -> list[str]:
        value = self.get(key)
        if value is None:
            return []
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        return str(value).split()

    def _require(self, key: str, default: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING or value == "":
            if default is _MISSING:
                raise ConfigError(f"required parameter {key!r} is missing")
            return default
        return value

    def get_int(self, key: str, default: Any = _MISSING) -> int:
        value = self._require(key, default)
        try:
            return int(str(value).strip(), 0) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"parameter {key} = {value!r} is not an integer") from None

    def get_float(self, key: str, default: Any = _MISSING) -> float:
        value = self._require(key, default)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"parameter {key} = {value!r} is not a number") from None

    def get_bool(self, key: str, default: Any = _MISSING) -> bool:
        value = self._require(key, default)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"parameter {key} = {value!r} is not a boolean (yes/no)")

    def get_list(self, key: str, default: Optional[list[str]] = None,
                 separator: Optional[str] = None) -> list[str]:
        value = self.get(key)
        if value is None or value == "":
            return list(default or [])
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        return [v.strip() for v in str(value).split(separator) if v.strip()]
