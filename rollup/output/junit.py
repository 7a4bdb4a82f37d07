"""A JUnit XML report of a run: one test case per host, for CI systems to display."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rollup.run.events import ActionResult, Event, HostStateChanged, RunFinished


@dataclass
class _Case:
    name: str
    state: str = "pending"
    seconds: float = 0.0
    failure: str = ""
    code: str = ""
    evidence: tuple[str, ...] = ()
    steps: list[str] = field(default_factory=list)


class JUnitSink:
    """Collects host outcomes from events and writes the file when the run finishes."""

    def __init__(self, path: Path | str, pool: str, hosts: Iterable[tuple[str, str]] = ()) -> None:
        """`hosts`: (id, name) of every host the plan upgrades, in its order, so a run
        that stops early still reports the hosts it never reached."""
        self.path = Path(path)
        self.pool = pool
        self._cases: dict[str, _Case] = {host: _Case(name) for host, name in hosts}

    def __call__(self, event: Event) -> None:
        match event:
            case HostStateChanged(host=host, host_name=name, state=state, reason=reason):
                case = self._cases.setdefault(host, _Case(name))
                case.state = state
                if state == "skipped":
                    case.failure = reason
            case ActionResult(host=host, host_name=name) as result:
                case = self._cases.setdefault(host, _Case(name))
                case.seconds += result.seconds
                case.steps.append(
                    f"{result.state}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.1f}s"
                    + (f" ({result.detail})" if result.detail else "")
                )
                if not result.ok:
                    case.failure = f"{result.state}: {result.error}"
                    case.code = result.code
                    case.evidence = result.evidence
            case RunFinished() as finished:
                self.write(finished)

    def write(self, finished: RunFinished) -> None:
        cases = list(self._cases.values())
        failures = sum(1 for c in cases if c.state == "failed")
        skipped = sum(1 for c in cases if c.state == "skipped")
        suite = ET.Element(
            "testsuite",
            name=f"rollup {self.pool}",
            tests=str(len(cases)),
            failures=str(failures),
            errors="0",
            skipped=str(skipped),
            time=f"{finished.seconds:.3f}",
        )
        for case in cases:
            element = ET.SubElement(
                suite,
                "testcase",
                classname=f"rollup.{self.pool}",
                name=case.name,
                time=f"{case.seconds:.3f}",
            )
            if case.state == "failed":
                failure = ET.SubElement(
                    element, "failure", message=case.failure, type=case.code or "failed"
                )
                # CI shows this text as the failure's "stack trace": what the playbook or
                # the hypervisor said; the steps, without it, are the next best thing.
                failure.text = "\n".join(case.evidence or case.steps)
            elif case.state == "skipped":
                ET.SubElement(element, "skipped", message=case.failure or "skipped")
            elif case.state != "done":
                ET.SubElement(
                    element,
                    "skipped",
                    message=f"not finished: {case.state} (run {finished.outcome})",
                )
            ET.SubElement(element, "system-out").text = "\n".join(case.steps)
        suites = ET.Element("testsuites")
        suites.append(suite)
        ET.indent(suites)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(suites).write(self.path, encoding="utf-8", xml_declaration=True)
