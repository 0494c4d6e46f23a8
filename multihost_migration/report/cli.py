"""`mhm-report RESULTS_DIR`: regenerate junit.xml and report.html.

`mhm-report merge DIR... -o OUT`: one results directory (results.json,
status.log, junit.xml, report.html) from the shards of one job
(`autotest-remote --shard I/N`); shards of different jobs are refused.

Prints the paths written, one a line.  A missing directory or a bad
results.json is one line on stderr naming the file, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from multihost_migration.errors import ReportError
from multihost_migration.report.html import write_html
from multihost_migration.report.junit import write_junit
from multihost_migration.report.merge import merge
from multihost_migration.report.model import RESULTS_FILE

log = logging.getLogger(__name__)


def merge_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mhm-report merge",
        description="Merge the results directories of one job's shards "
                    "(autotest-remote --shard I/N) into one.")
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an OUT that is not empty")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def write() -> list[Path]:
        out = merge(args.dirs, args.output, overwrite=args.overwrite)
        return [out / RESULTS_FILE, write_junit(out), write_html(out)]

    return _report("mhm-report merge", f"cannot write {args.output}", write)


def _report(prog: str, cannot: str, write: Callable[[], list[Path]]) -> int:
    """Run `write`, print the files it wrote; exit status 2 on a bad input or
    a failed write, with `prog` and the reason on stderr."""
    try:
        paths = write()
    except ReportError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{prog}: {cannot}: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="mhm-report",
        description="Regenerate junit.xml and report.html from an autotest-remote "
                    "results directory.")
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return _report("mhm-report", "cannot write the report",
                   lambda: [write_junit(args.results_dir), write_html(args.results_dir)])


if __name__ == "__main__":
    sys.exit(main())
