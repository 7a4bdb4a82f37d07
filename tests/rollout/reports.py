"""What a pipeline reads of a run: its `--json` event lines and its `--junit` file."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema

from rollup.output.event_schema import schema


def valid_events(lines: str | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of a run (its `--json` stdout, or events already read), each checked
    against the published schema."""
    if isinstance(lines, str):
        events = [json.loads(line) for line in lines.splitlines()]
    else:
        events = list(lines)
    validator = jsonschema.Draft202012Validator(schema())
    for event in events:
        validator.validate(event)
    return events


def junit_cases(path: Path) -> tuple[ET.Element, dict[str, ET.Element]]:
    """The one test suite of a `--junit` file and its test cases by host name."""
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    cases = {case.get("name", ""): case for case in suite.iter("testcase")}
    assert suite.get("tests") == str(len(cases)), "the count says how many cases there are"
    return suite, cases


def not_reached(cases: dict[str, ET.Element], reached: set[str], outcome: str) -> None:
    """Hosts the run never got to are marked skipped with the run's outcome; never
    passed and never failed."""
    for name in set(cases) - reached:
        skipped = cases[name].find("skipped")
        assert skipped is not None, f"{name} was not upgraded but its case passed"
        assert skipped.get("message", "").endswith(f"(run {outcome})"), skipped.get("message")
