"""`Parser`: the reference parser's API over our reader and expander."""

from __future__ import annotations

import contextlib
import gc
import logging
from typing import Any, Iterator, Optional, Sequence

from multihost_migration.cartesian import tree
from multihost_migration.cartesian.model import Node
from multihost_migration.cartesian.syntax import TreeBuilder

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while we build the tree and
    the dicts: they allocate hundreds of thousands of objects that live on,
    and each collection the allocations trigger walks all of them (half of
    the time on a large tree).  Pausing only defers collection (whatever
    is garbage is collected by the next run after); the collector is back
    on, as the caller had it, before anything returns or is yielded.

    `Parser.get_dicts` also keeps what exists once the state graph is
    built (the tree, the graph) out of the young generations while the
    dicts are made (``gc.freeze``), and puts it in the oldest one at the
    end (``gc.unfreeze``): else the collector walks those hundreds of
    thousands of objects two or three times as they age, a quarter of the
    time on a real tree.  (Not when something else froze objects: the end
    would unfreeze them.)"""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Parser:
    """Parse Cartesian config text and generate its dicts.

    Drop-in for ``virttest.cartesian_config.Parser``: successive
    ``parse_file``/``parse_string`` calls add to the same tree, each text's
    statements after the previous ones'; ``get_dicts()`` yields one dict
    per selected variant combination, with the ``name``, ``shortname`` and
    ``dep`` keys (and ``_name_map_file``/``_short_name_map_file`` when
    there are variants).

    ``defaults=True`` keeps, of each variants block, only its default
    entry (``@name`` or ``[default=name]``) when that entry yields
    anything; ``expand_defaults`` names the blocks to keep whole.

    As in the reference, only the first ``get_dicts()`` call of a parser
    merges the suffixed keys (``suffix``) into plain names; later calls
    yield them as tuples ``(key, suffix, ...)``.
    """

    def __init__(self, filename: Optional[str] = None, defaults: bool = False,
                 expand_defaults: Sequence[str] = (), debug: bool = False) -> None:
        self.defaults = defaults
        self.expand_defaults = list(expand_defaults)
        self.debug = debug
        self.node = Node()
        self.filename = filename
        self.only_filters: list[str] = []
        self.no_filters: list[str] = []
        self.assignments: list[str] = []
        self._builder = TreeBuilder(defaults, self.expand_defaults)
        self._finished: Optional[tree.Prepared] = None
        self._first_get_dicts = True
        if filename:
            self.parse_file(filename)

    def parse_file(self, filename: str) -> None:
        """Parse a file; ``include`` paths are relative to it."""
        log.debug("parsing %s", filename)
        scope = self.node
        with _gc_paused():
            self.node = self._builder.parse_file(filename, scope)
        self.filename = filename
        self._changed(scope)

    def parse_string(self, s: str) -> None:
        """Parse a string; ``include`` paths are relative to the cwd."""
        scope = self.node
        with _gc_paused():
            self.node = self._builder.parse_text(s, scope)
        self._changed(scope)

    def _changed(self, scope: Node) -> None:
        """A text was read into `scope` (the only node read before whose
        content can change): its Info is made again, as the new nodes'."""
        scope.info = None
        self._finished = None

    def only_filter(self, variant: str) -> None:
        """Same as parsing ``only <variant>``."""
        string = f"only {variant}"
        self.only_filters.append(string)
        self.parse_string(string)

    def no_filter(self, variant: str) -> None:
        """Same as parsing ``no <variant>``."""
        string = f"no {variant}"
        self.no_filters.append(string)
        self.parse_string(string)

    def assign(self, key: str, value: str) -> None:
        """Same as parsing ``key = value``."""
        string = f"{key} = {value}"
        self.assignments.append(string)
        self.parse_string(string)

    def get_dicts(self, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield the dicts selected by everything parsed so far."""
        if self._finished is None:
            with _gc_paused():
                self._finished = tree.finish(
                    self.node, tree.Options(self.defaults, self.expand_defaults))
        flatten = self._first_get_dicts
        self._first_get_dicts = False
        dicts = tree.expand(self.node, self._finished, flatten)
        frozen = False
        try:
            while True:
                # as `_gc_paused` (inlined: once per dict)
                was_enabled = gc.isenabled()
                gc.disable()
                try:
                    d = next(dicts, None)
                    if not frozen and not gc.get_freeze_count():
                        gc.freeze()
                        frozen = True
                finally:
                    if was_enabled:
                        gc.enable()
                if d is None:
                    return
                yield d  # type: ignore[misc]
        finally:
            if frozen:
                gc.unfreeze()
