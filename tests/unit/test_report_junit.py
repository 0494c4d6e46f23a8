"""Tests of multihost_migration.report.junit: the subset of the JUnit format
that Jenkins' junit plugin and GitLab read, checked with an XSD."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from multihost_migration.report.junit import build_junit, clean, write_junit
from multihost_migration.report.model import load_results
from tests.unit.test_report_model import (FAIL_REASON, GROUP, failing_test, make_results,
                                          passing_test, standard_results)

# The Jenkins junit schema, restricted to what write_junit produces; strict
# (no unknown elements/attributes) so a drift in the writer fails the test.
JUNIT_XSD = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified">
  <xs:simpleType name="seconds">
    <xs:restriction base="xs:decimal"><xs:minInclusive value="0"/></xs:restriction>
  </xs:simpleType>
  <xs:complexType name="message" mixed="true">
    <xs:attribute name="message" type="xs:string"/>
    <xs:attribute name="type" type="xs:string"/>
  </xs:complexType>
  <xs:element name="property">
    <xs:complexType>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="value" type="xs:string" use="required"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="properties">
    <xs:complexType><xs:sequence>
      <xs:element ref="property" minOccurs="0" maxOccurs="unbounded"/>
    </xs:sequence></xs:complexType>
  </xs:element>
  <xs:element name="testcase">
    <xs:complexType>
      <xs:sequence>
        <xs:choice minOccurs="0">
          <xs:element name="skipped" type="message"/>
          <xs:element name="error" type="message"/>
          <xs:element name="failure" type="message"/>
        </xs:choice>
        <xs:element name="system-out" type="xs:string" minOccurs="0"/>
        <xs:element name="system-err" type="xs:string" minOccurs="0"/>
      </xs:sequence>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="classname" type="xs:string" use="required"/>
      <xs:attribute name="time" type="seconds" use="required"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="testsuite">
    <xs:complexType>
      <xs:sequence>
        <xs:element ref="properties" minOccurs="0"/>
        <xs:element ref="testcase" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="tests" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="failures" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="errors" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="skipped" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="time" type="seconds" use="required"/>
      <xs:attribute name="timestamp" type="xs:dateTime" use="required"/>
      <xs:attribute name="hostname" type="xs:string" use="required"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="testsuites">
    <xs:complexType>
      <xs:sequence>
        <xs:element ref="testsuite" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
      <xs:attribute name="name" type="xs:string"/>
      <xs:attribute name="tests" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="failures" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="errors" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="skipped" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="time" type="seconds" use="required"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(JUNIT_XSD)


def test_standard_results_validate(tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    path = write_junit(standard_results(tmp_path / "r"))
    assert path == tmp_path / "r" / "junit.xml"
    schema.validate(str(path))


def test_schema_rejects_what_jenkins_would_not_read(tmp_path: Path,
                                                    schema: xmlschema.XMLSchema) -> None:
    path = write_junit(standard_results(tmp_path / "r"))
    root = ET.parse(path).getroot()
    root.find("testsuite/testcase").set("time", "-1")  # type: ignore[union-attr]
    assert not schema.is_valid(ET.tostring(root, encoding="unicode"))


def test_one_testcase_per_test_with_counts(tmp_path: Path) -> None:
    root = ET.parse(write_junit(standard_results(tmp_path / "r"))).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors"),
            root.get("skipped")) == ("4", "1", "1", "0")
    assert root.get("time") == "75.500"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"migrate.tcp.passing", "migrate.tcp.failing",
                          "migrate.tcp.pingpong", "migrate.minimal"}
    assert cases["migrate.tcp.failing"].get("classname") == GROUP
    assert cases["migrate.tcp.failing"].get("time") == "12.250"
    assert cases["migrate.minimal"].get("classname") == "ungrouped"
    assert cases["migrate.minimal"].get("time") == "0.000"
    assert list(cases["migrate.tcp.passing"]) == [cases["migrate.tcp.passing"][0]]
    assert cases["migrate.tcp.passing"][0].tag == "system-out"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites[GROUP].get("tests") == "3" and suites["ungrouped"].get("errors") == "1"


def test_failure_carries_reason_hosts_and_log_path(tmp_path: Path) -> None:
    root = ET.parse(write_junit(standard_results(tmp_path / "r"))).getroot()
    case = next(c for c in root.iter("testcase") if c.get("name") == "migrate.tcp.failing")
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "FAIL"
    assert FAIL_REASON in (failure.get("message") or "")
    text = failure.text or ""
    assert f"  h1: FAIL: {FAIL_REASON}" in text
    assert f"logs: {tmp_path / 'r' / GROUP / 'migrate.tcp.failing'}" in text
    error = next(c for c in root.iter("testcase")
                 if c.get("name") == "migrate.minimal").find("error")
    assert error is not None and "logs: (not found)" in (error.text or "")


@pytest.mark.parametrize("status, tag", [("GOOD", None), ("WARN", None), ("FAIL", "failure"),
                                         ("ERROR", "error"), ("ABORT", "error"),
                                         ("TEST_NA", "skipped"), ("weird", "error")])
def test_status_mapping(tmp_path: Path, status: str, tag: str,
                        schema: xmlschema.XMLSchema) -> None:
    test = passing_test()
    test["status"] = status
    root = build_junit(load_results(make_results(tmp_path, [test]))).getroot()
    assert root is not None
    case = root.find("testsuite/testcase")
    assert case is not None
    assert [c.tag for c in case if c.tag != "system-out"] == ([tag] if tag else [])
    schema.validate(ET.tostring(root, encoding="unicode"))


def test_control_characters_from_console_stay_valid_xml(
        tmp_path: Path, schema: xmlschema.XMLSchema) -> None:
    test = failing_test()
    test["reason"] = "console said \x1b[31mpanic\x1b[0m\x00 then died"
    path = write_junit(make_results(tmp_path, [test]))
    schema.validate(str(path))
    assert "console said \ufffd[31mpanic" in path.read_text()
    assert clean("ok\ttab\n") == "ok\ttab\n"


def test_rewrite_replaces_previous_file(tmp_path: Path) -> None:
    root = make_results(tmp_path, [passing_test()])
    write_junit(root)
    data = json.loads((root / "results.json").read_text())
    data["tests"][0]["status"] = "FAIL"
    (root / "results.json").write_text(json.dumps(data))
    assert ET.parse(write_junit(root)).getroot().get("failures") == "1"
    assert not (root / "junit.xml.tmp").exists()
