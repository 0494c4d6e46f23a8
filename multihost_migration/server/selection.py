"""Which tests a cfg selects: the Cartesian cfg plus extra lines, parsed on
the controller; a selection of zero tests is an error naming the filter
that removed the last test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from multihost_migration.errors import ConfigError


def default_cfg(control: Path) -> Path:
    """cfg/multi-host-tests.cfg beside the control file, else in the checkout."""
    for root in (control.resolve().parent, Path(__file__).resolve().parents[2]):
        candidate = root / "cfg" / "multi-host-tests.cfg"
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no cfg/multi-host-tests.cfg beside {control}; pass --cfg")


def select_tests(cfg: Path, extra_lines: Sequence[str]) -> list[dict[str, Any]]:
    """Parse the cfg plus extra lines ('only x', 'key = value'); refuse zero tests."""
    tests = _parse(None, cfg, extra_lines)
    if not tests:
        raise ConfigError(explain_zero(cfg, extra_lines), filename=str(cfg))
    return tests


def _parse(text: Optional[str], cfg: Path, extra_lines: Sequence[str]) -> list[dict[str, Any]]:
    from multihost_migration.cartesian import Parser
    parser = Parser()
    if text is None:
        parser.parse_file(str(cfg))
    else:
        parser.parse_string(text)
    for line in extra_lines:
        parser.parse_string(line)
    return list(parser.get_dicts())


def explain_zero(cfg: Path, extra_lines: Sequence[str]) -> str:
    """Which top-level `only`/`no` filter takes the selection to zero tests.

    The cfg is re-read with its top-level filters taken out (includes made
    absolute), then the filters are put back one by one, in order.
    """
    body, filters = [], []
    for number, line in enumerate(cfg.read_text().splitlines(), 1):
        stripped = line.strip()
        if line.startswith("include "):
            target = (cfg.parent / line.split(None, 1)[1].strip()).resolve()
            body.append(f"include {target}")
        elif line[:1] not in (" ", "\t") and stripped.startswith(("only ", "no ")):
            filters.append((f"{cfg.name}:{number}", stripped))
        else:
            body.append(line)
    filters += [("command line", line) for line in extra_lines
                if line.startswith(("only ", "no "))]
    assignments = [line for line in extra_lines if not line.startswith(("only ", "no "))]
    text = "\n".join(body) + "\n"
    before = len(_parse(text, cfg, assignments))
    if before == 0:
        return "the cfg defines no test even before its only/no filters"
    for i, (where, line) in enumerate(filters):
        count = len(_parse(text + "\n".join(f for _, f in filters[:i + 1]) + "\n", cfg,
                           assignments))
        if count == 0:
            return (f"the filters select zero tests: `{line}` ({where}) removed the "
                    f"last {before} test(s) left by the filters before it")
        before = count
    return "the filters select zero tests (no single filter is to blame)"
