"""junit.xml for Jenkins and GitLab from a results directory.

One <testsuite> per host group, one <testcase> per test in it
(classname = group, name = test name).  Status mapping:

    GOOD, WARN     -> passed (WARN's reason goes to <system-out>)
    FAIL           -> <failure>
    ERROR, ABORT   -> <error>   (and anything unknown)
    TEST_NA        -> <skipped>

Failure/error texts carry the reason, every host's verdict and the path of
the test's logs so a reader of the CI page knows where to look.
"""

from __future__ import annotations

import logging
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from multihost_migration.report.model import Results, TestResult, load_results
from multihost_migration.verdicts import PASSING

log = logging.getLogger(__name__)

JUNIT_FILE = "junit.xml"
FAILURE_STATUSES = frozenset({"FAIL"})
SKIPPED_STATUSES = frozenset({"TEST_NA"})
PASSED_STATUSES = PASSING


# Characters XML 1.0 cannot carry (console output has escape sequences).
_INVALID_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: str) -> str:
    """`text` with the characters XML 1.0 forbids replaced by U+FFFD."""
    return _INVALID_XML.sub("\ufffd", text)


def _secs(value: Optional[float]) -> str:
    return f"{max(value or 0.0, 0.0):.3f}"


def _opt(value: Optional[float]) -> str:
    return "?" if value is None else f"{value:g}"


def _outcome(status: str) -> str:
    if status in PASSED_STATUSES:
        return "passed"
    if status in FAILURE_STATUSES:
        return "failure"
    if status in SKIPPED_STATUSES:
        return "skipped"
    return "error"


def _details(test: TestResult) -> str:
    lines = [f"{test.status}: {test.reason}" if test.reason else test.status]
    for host in test.host_results:
        lines.append(f"  {host.host}: {host.status}"
                     + (f": {host.reason}" if host.reason else ""))
    lines.append(f"logs: {test.logdir if test.logdir is not None else '(not found)'}")
    return "\n".join(lines)


def _testcase(parent: ET.Element, test: TestResult) -> str:
    case = ET.SubElement(parent, "testcase", name=clean(test.name),
                         classname=clean(test.group or "ungrouped"),
                         time=_secs(test.duration))
    outcome = _outcome(test.status)
    message = clean((test.reason.splitlines() or [test.status])[0][:1000])
    if outcome in ("failure", "error"):
        elem = ET.SubElement(case, outcome, message=message, type=test.status)
        elem.text = clean(_details(test))
    elif outcome == "skipped":
        ET.SubElement(case, "skipped", message=message)
    out = [f"hosts: {', '.join(test.hosts)}"]
    if test.status == "WARN":
        out.append(f"WARN: {test.reason}")
    for mig in test.migrations:
        for st in mig.stats:
            out.append(f"{mig.id} {st.vm} {mig.src}->{mig.dst}: {st.status} "
                       f"total={_opt(st.total_time_ms)} ms downtime={_opt(st.downtime_ms)} ms")
    out.append(f"logs: {test.logdir if test.logdir is not None else '(not found)'}")
    ET.SubElement(case, "system-out").text = clean("\n".join(out))
    return outcome


def build_junit(results: Results) -> ET.ElementTree:
    """The junit document for `results` (not written)."""
    root = ET.Element("testsuites", name="multihost_migration")
    groups: dict[str, list[TestResult]] = {}
    for test in results.tests:
        groups.setdefault(test.group or "ungrouped", []).append(test)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S",
                          time.localtime(results.job.started or time.time()))
    for group, tests in groups.items():
        suite = ET.SubElement(root, "testsuite", name=group)
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="machines",
                      value=",".join(results.job.machines))
        ET.SubElement(props, "property", name="control", value=results.job.control)
        counts = {"tests": len(tests), "failures": 0, "errors": 0, "skipped": 0}
        for test in tests:
            outcome = _testcase(suite, test)
            key = {"failure": "failures", "error": "errors", "skipped": "skipped"}.get(outcome)
            if key:
                counts[key] += 1
        suite_time = sum(t.duration or 0.0 for t in tests)
        suite.attrib.update({k: str(v) for k, v in counts.items()})
        suite.set("time", _secs(suite_time))
        suite.set("timestamp", stamp)
        suite.set("hostname", ",".join(sorted({h for t in tests for h in t.hosts})))
        for key, value in counts.items():
            totals[key] += value
        total_time += suite_time
    root.attrib.update({k: str(v) for k, v in totals.items()})
    root.set("time", _secs(results.job.duration if results.job.duration is not None
                           else total_time))
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(results_dir: Path) -> Path:
    """Write RESULTS_DIR/junit.xml; returns its path."""
    results = load_results(Path(results_dir))
    path = results.results_dir / JUNIT_FILE
    tmp = path.with_name(path.name + ".tmp")
    build_junit(results).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
    log.info("wrote %s (%d testcases)", path, len(results.tests))
    return path
