"""Reports from a results directory: junit.xml (CI), report.html (people),
and the live console progress printer the server feeds during a run.

Layering: reads results.json / status.log written by the runner and the
server; imports nothing above `multihost_migration.status` and `errors`.
"""

from multihost_migration.report.html import write_html
from multihost_migration.report.junit import write_junit
from multihost_migration.report.model import Results, load_results
from multihost_migration.report.progress import Progress

__all__ = ["Progress", "Results", "load_results", "write_html", "write_junit"]
