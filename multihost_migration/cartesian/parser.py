"""`Parser`: the reference parser's API over our syntax reader and tree."""

from __future__ import annotations

import logging
from typing import Any, Iterator, Optional, Sequence

from multihost_migration.cartesian import tree
from multihost_migration.cartesian.syntax import SyntaxReader, Stmt

log = logging.getLogger(__name__)


class Parser:
    """Parse Cartesian config text and generate its dicts.

    Drop-in for ``virttest.cartesian_config.Parser``: successive
    ``parse_file``/``parse_string`` calls behave as if their texts were
    concatenated; ``get_dicts()`` yields one dict per selected variant
    combination, with the ``name``, ``shortname`` and ``dep`` keys.
    """

    def __init__(self, filename: Optional[str] = None, defaults: bool = False,
                 expand_defaults: Sequence[str] = (), debug: bool = False) -> None:
        self.defaults = defaults
        self.expand_defaults = tuple(expand_defaults)
        self.debug = debug
        self._stmts: list[Stmt] = []
        self._root: Optional[tree.Node] = None
        if filename:
            self.parse_file(filename)

    def parse_file(self, filename: str) -> None:
        """Parse a file; ``include`` paths are relative to it."""
        log.debug("parsing %s", filename)
        self._add(SyntaxReader().read_file(filename))

    def parse_string(self, s: str) -> None:
        """Parse a string; ``include`` paths are relative to the cwd."""
        self._add(SyntaxReader().read_text(s))

    def only_filter(self, variant: str) -> None:
        """Same as parsing ``only <variant>``."""
        self.parse_string(f"only {variant}\n")

    def no_filter(self, variant: str) -> None:
        """Same as parsing ``no <variant>``."""
        self.parse_string(f"no {variant}\n")

    def assign(self, key: str, value: str) -> None:
        """Same as parsing ``key = value``."""
        self.parse_string(f"{key} = {value}\n")

    def _add(self, stmts: Sequence[Stmt]) -> None:
        self._stmts.extend(stmts)
        self._root = None

    def tree(self) -> tree.Node:
        """The variant tree of everything parsed so far."""
        if self._root is None:
            root = tree.build(self._stmts, tree.Node(), self.defaults,
                              self.expand_defaults)
            tree.finish(root)
            self._root = root
        return self._root

    def get_dicts(self, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield the dicts selected by everything parsed so far."""
        yield from tree.expand(self.tree())
