"""``?=``-style keys found through tree._KeyIndex: same dicts as the reference."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from multihost_migration.cartesian import Parser

TEXT = """\
abc = 1
abd = 2
ab = 3
xyz = 4
kill_vm = yes
kill_vm_on_error = yes
a.c = 5
variants:
    - one:
        EXPR ?= new
        EXPR ?+= _more
    - two:
        EXPR ?<= pre_
"""

EXPRESSIONS = ["abc", "ab", "abz", "ab.", "abc?", "ab[cd]", "abc|xyz", "(ab|xy)[a-z]",
               "kill_vm.*", "kill_vm", "a.c", "a\\.c", ".*", "x+yz", "ab{1}d", "^abc"]


def _dicts(parser: Any, text: str) -> list[list[tuple[str, Any]]]:
    parser.parse_string(text)
    return [list(d.items()) for d in parser.get_dicts()]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_same_targets_as_the_reference(expression: str) -> None:
    cartesian_config = pytest.importorskip("virttest.cartesian_config")
    logging.getLogger("virttest").setLevel(logging.CRITICAL)
    text = TEXT.replace("EXPR", expression)
    assert _dicts(Parser(), text) == _dicts(cartesian_config.Parser(), text)
