"""`mhm-report RESULTS_DIR`: regenerate junit.xml and report.html.

Prints the paths written, one a line.  A missing directory or a bad
results.json is one line on stderr naming the file, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from multihost_migration.errors import ReportError
from multihost_migration.report.html import write_html
from multihost_migration.report.junit import write_junit

log = logging.getLogger(__name__)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mhm-report",
        description="Regenerate junit.xml and report.html from an autotest-remote "
                    "results directory.")
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        paths = [write_junit(args.results_dir), write_html(args.results_dir)]
    except ReportError as err:
        print(f"mhm-report: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"mhm-report: cannot write the report: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
