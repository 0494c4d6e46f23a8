"""Cartesian config parser: the format of avocado-vt and tp-qemu.

    from multihost_migration.cartesian import Parser
    parser = Parser()
    parser.parse_file("tests.cfg")
    for d in parser.get_dicts():
        ...
"""

from multihost_migration.cartesian.parser import Parser
from multihost_migration.errors import (ConfigError, ConfigSyntaxError,
                                        MissingIncludeError)

__all__ = ["Parser", "ConfigError", "ConfigSyntaxError", "MissingIncludeError"]

from multihost_migration.params import Params  # noqa: E402

__all__.append("Params")
