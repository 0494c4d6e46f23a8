"""Errors: every file of the broken-file corpus (cartesian_corpus/) is
reported with the right file, line and column, and a message saying what
is wrong; the reference rejects each of them too."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import pytest

from multihost_migration.cartesian import Parser
from multihost_migration.errors import ConfigError, MissingIncludeError

from virttest import cartesian_config  # noqa: E402
logging.getLogger("virttest").setLevel(logging.CRITICAL)

CORPUS = os.path.join(os.path.dirname(__file__), "cartesian_corpus")
FILES = sorted(f for f in os.listdir(CORPUS) if f.endswith(".cfg"))
_EXPECT = re.compile(r"# expect: (\S+?):(\d+)(?::(\d+))? (.*)")


def expectation(name: str) -> tuple[str, int, int | None, str]:
    with open(os.path.join(CORPUS, name), encoding="utf-8") as fh:
        m = _EXPECT.match(fh.readline())
    assert m, f"{name}: first line must be '# expect: FILE:LINE[:COL] REGEX'"
    column = int(m.group(3)) if m.group(3) else None
    return (os.path.join(CORPUS, m.group(1)), int(m.group(2)), column,
            m.group(4))


def _parse(factory: Any, path: str) -> list[Any]:
    parser = factory()
    parser.parse_file(path)
    return list(parser.get_dicts())


def test_corpus_is_there() -> None:
    assert len(FILES) >= 25


@pytest.mark.parametrize("name", FILES)
def test_error_names_file_line_and_column(name: str) -> None:
    filename, line, column, pattern = expectation(name)
    with pytest.raises(ConfigError) as exc:
        _parse(Parser, os.path.join(CORPUS, name))
    err = exc.value
    where = (os.path.normpath(err.filename or ""), err.line,
             getattr(err, "column", None))
    assert where[:2] == (os.path.normpath(filename), line), str(err)
    if column is not None:
        assert where[2] == column, str(err)
    assert re.search(pattern, err.message), str(err)
    # the message names the place and shows the line
    assert f"{err.filename}:{err.line}" in str(err)


@pytest.mark.parametrize("name", FILES)
def test_reference_rejects_it_too(name: str) -> None:
    with pytest.raises(Exception):
        _parse(cartesian_config.Parser, os.path.join(CORPUS, name))


def test_missing_include_names_the_including_file() -> None:
    path = os.path.join(CORPUS, "missing_include.cfg")
    with pytest.raises(MissingIncludeError) as exc:
        _parse(Parser, path)
    assert exc.value.filename == path and exc.value.line == 4
    assert exc.value.path == os.path.join(CORPUS, "inc", "nothere.cfg")
    assert "include inc/nothere.cfg" in str(exc.value)
