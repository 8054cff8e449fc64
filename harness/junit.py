"""Counts from a pytest ``--junitxml`` report: how a run inside the VM or on
a remote host went, without parsing pytest's console output."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

KEYS = ("tests", "failures", "errors", "skipped")


def counts(report: Path) -> dict[str, int]:
    """tests, failures, errors and skipped of the (first) test suite."""
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    return {k: int(suite.get(k, 0)) for k in KEYS}


SUMMARY = "summary"
"""The property name a payload test records (pytest's ``record_property``)
for a line in the VM suite's summary: a measured count or rate that a
kernel developer should see without opening the log."""


def summaries(report: Path) -> list[str]:
    """Every ``summary`` property the report's test cases recorded, in order."""
    root = ET.parse(report).getroot()
    return [p.get("value", "") for p in root.iter("property") if p.get("name") == SUMMARY]


def clean(c: dict[str, int]) -> bool:
    """Every test ran and passed: a skip counts against it, because where
    the payload runs (the VM, a patched host) every test must be able to."""
    return c["tests"] > 0 and c["failures"] == c["errors"] == c["skipped"] == 0
