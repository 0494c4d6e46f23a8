"""Cartesian config parser: the format of avocado-vt and tp-qemu.

    from multihost_migration.cartesian import Parser
    parser = Parser()
    parser.parse_file("tests.cfg")
    for d in parser.get_dicts():
        ...

Same meaning as the reference parser (avocado-vt's
``virttest/cartesian_config.py``, avocado-framework-plugin-vt 113.0, the
version the conformance tests pin): the same dicts, with the same names,
keys, values and key order, for every text it accepts, and an error for
every text it rejects.  But much faster on large trees, and every error
names the file, line and column (`ConfigSyntaxError`), an ``include`` of a
missing file names the including file (`MissingIncludeError`).

Modules: `syntax` reads text into the variant tree (`model`), token for
token as the reference; `bodyscan` indexes an entry's body so that it is
read only when the expansion enters the entry (a filter that excludes most
of a tree costs little); `filters` matches ``only``/``no``/``filter:``
expressions; `ops` is what assignments, ``del`` and ``suffix`` do to a
dict; `tree` expands the tree into dicts; `parser` is the reference's API.

Where we knowingly differ from the reference:

* ``join`` with three or more filters: the reference loses dicts (the
  cache of failed filters on its tree nodes outlives the repeated
  expansions a join makes); we yield the whole product its documentation
  describes.
* ``variants [meta] name:`` (options before the name): the reference names
  the block after a token class, ``<class 'virttest.cartesian_config.
  LIdentifier'>``; we do the same, but log a warning.
* Errors the reference raises while expanding (a join inside a
  conditional block, a ``k_max`` that is not a number, a filter with an
  empty name such as ``a, .b``) are raised here too, as ConfigErrors; in
  a few orders of evaluation ours may raise where the reference quietly
  dropped the dicts concerned, or the other way round.
* An entry's body is read when the expansion enters the entry (see
  `bodyscan`): an error in the body of an entry the filters exclude
  that the quick look at its lines cannot see (rare: e.g. ``k ?= v``
  whose key is a bad regular expression, applied to the plain
  assignments before it) is not raised, where the reference rejects the
  file.  Any line or block the look does not know for plain makes the
  body read at once, so the errors of the corpus are raised as before.
"""

from multihost_migration.cartesian.parser import Parser
from multihost_migration.errors import (ConfigError, ConfigSyntaxError,
                                        MissingIncludeError)

__all__ = ["Parser", "ConfigError", "ConfigSyntaxError", "MissingIncludeError"]

from multihost_migration.params import Params  # noqa: E402

__all__.append("Params")
