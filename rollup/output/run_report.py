"""`rollup report RUN`: what a run did, for people who were not watching.

One HTML file with nothing to fetch (styles and the timeline chart inline), or Markdown
for a change ticket. Both put the plan and what happened side by side per host, list
what diverged from the plan and what failed with its evidence; the HTML draws the
timeline (rollup/output/timeline.py). Everything taken from the journal is escaped.
"""

from __future__ import annotations

import html
import time

from rollup.output import timeline
from rollup.output.run_story import HostStory, RunStory
from rollup.text.plurals import count
from rollup.text.units import format_duration

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; font-size: 1.15em; }
.outcome { font-weight: bold; } .completed { color: #2a7f2a; } .paused { color: #b36b00; }
.failed, .aborted { color: #b3261e; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; }
pre { background: #f7f7f7; border-left: 3px solid #b3261e; padding: 0.5em; overflow-x: auto; }
#timeline svg { max-width: 100%; height: auto; }
"""


def _when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "-"


def _outcome(story: RunStory) -> str:
    return story.record.outcome or story.record.state


def _actual(host: HostStory) -> str:
    if host.skipped_because:
        return f"left out: {host.skipped_because}"
    if not host.states:
        return "not reached"
    return f"{host.final} after {format_duration(host.seconds)}"


def _planned(host: HostStory) -> str:
    if host.batch is None:
        return "-"
    updates = f", {count(len(host.planned_updates), 'update')}" if host.planned_updates else ""
    if host.upgrade:
        updates = f", upgrade to {host.upgrade}"
    return (
        f"batch {host.batch}: {count(host.planned_out, 'VM')} out{updates},"
        f" about {format_duration(host.planned_seconds)}"
    )


def _waited(host: HostStory) -> str:
    return ", ".join(f"{format_duration(b - a)} on {gate}" for a, b, gate, _ in host.waits) or "-"


def html_report(story: RunStory) -> str:
    e = html.escape
    record = story.record
    outcome = _outcome(story)
    planned = story.plan.migrations
    done = sum(1 for m in story.migrations if m.ok)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>rollup run {e(record.id)} on {e(record.pool)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>rollup run {e(record.id)} on pool {e(record.pool)}</h1>",
        f'<p class="outcome {e(outcome)}" id="outcome">{e(outcome)}: {e(record.message or "")}</p>',
        '<table id="summary">',
        f"<tr><th>Started</th><td>{_when(record.started)}</td></tr>",
        f"<tr><th>Ended</th><td>{_when(record.finished)}</td></tr>",
        f"<tr><th>Took</th><td>{format_duration(story.end - story.start)}"
        f" (planned about {format_duration(story.plan.estimate_seconds)})</td></tr>",
        f"<tr><th>Live migrations</th><td>{done} done, {planned} planned</td></tr>",
        f"<tr><th>Controller</th><td>{e(record.controller)}</td></tr>",
        "</table>",
        '<h2>Timeline</h2><div id="timeline">',
        timeline.svg(story),
        "</div>",
        '<h2>Plan and what happened, host by host</h2><table id="hosts">',
        "<tr><th>Host</th><th>Planned</th><th>Happened</th><th>Moved out / in</th>"
        "<th>Waited on health gates</th></tr>",
    ]
    for host in story.hosts:
        moved = f"{host.moves_out} / {host.moves_in}"
        parts.append(
            f'<tr data-host="{e(host.name)}"><td>{e(host.name)}</td><td>{e(_planned(host))}</td>'
            f'<td class="{e(host.final)}">{e(_actual(host))}</td>'
            f'<td class="num">{moved}</td><td>{e(_waited(host))}</td></tr>'
        )
    parts.append("</table>")
    if story.divergences:
        parts.append('<h2>Where the run left the plan</h2><ul id="divergences">')
        parts += [f"<li>{e(host)}: {e(detail)}</li>" for host, detail in story.divergences]
        parts.append("</ul>")
    failures = [(h, f) for h in story.hosts for f in h.failures]
    if failures:
        parts.append('<h2>Failures and their evidence</h2><div id="failures">')
        for host, failure in failures:
            parts.append(f"<h3>{e(host.name)}, {e(failure.state)}: {e(failure.error)}</h3>")
            if failure.evidence:
                parts.append(f"<pre>{e(chr(10).join(failure.evidence))}</pre>")
        parts.append("</div>")
    if story.warnings:
        parts.append('<h2>Warnings</h2><ul id="warnings">')
        parts += [f"<li>{e(text)}</li>" for text in story.warnings]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def markdown_report(story: RunStory) -> str:
    """The same for a change ticket, without the chart."""
    record = story.record
    cell = lambda text: text.replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [
        f"# rollup run {record.id} on pool {record.pool}",
        "",
        f"**{_outcome(story)}**: {record.message or ''}",
        "",
        f"- Started {_when(record.started)}, ended {_when(record.finished)}; took"
        f" {format_duration(story.end - story.start)} (planned about"
        f" {format_duration(story.plan.estimate_seconds)})",
        f"- Live migrations: {sum(1 for m in story.migrations if m.ok)} done,"
        f" {story.plan.migrations} planned",
        "",
        "| Host | Planned | Happened | Moved out / in | Waited on health gates |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {cell(h.name)} | {cell(_planned(h))} | {cell(_actual(h))} |"
        f" {h.moves_out} / {h.moves_in} | {cell(_waited(h))} |"
        for h in story.hosts
    ]
    if story.divergences:
        lines += ["", "## Where the run left the plan", ""]
        lines += [f"- {host}: {detail}" for host, detail in story.divergences]
    failures = [(h, f) for h in story.hosts for f in h.failures]
    if failures:
        lines += ["", "## Failures and their evidence"]
        for host, failure in failures:
            lines += ["", f"### {host.name}, {failure.state}: {failure.error}", ""]
            if failure.evidence:
                lines += ["~~~~", *failure.evidence, "~~~~"]
    if story.warnings:
        lines += ["", "## Warnings", ""]
        lines += [f"- {text}" for text in story.warnings]
    return "\n".join(lines) + "\n"
