"""The detail pane of the selected host: its steps with times (a failed step with the
last lines of its output), its live migrations with per-VM progress, and the task stream
of its patch playbook."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from rollup.text.plurals import count
from rollup.tui import cells
from rollup.tui.state import HostView

MIGRATION_ROWS = 12  # the busiest host still fits; the rest is counted, not listed
TASK_ROWS = 12
EVIDENCE_ROWS = 10  # the end of a failed step's output; the journal keeps more


def render_host(host: HostView, now: float) -> RenderableType:
    parts: list[RenderableType] = [_title(host, now)]
    if host.state == "failed":
        parts.append(
            Text(
                f"✗ failed while {host.failed_in}: {host.error or host.reason}\n"
                "  r retries that step · s skips the host · a aborts the run",
                style="bold red",
            )
        )
    elif host.reason:
        parts.append(Text(host.reason, style="italic"))
    if host.activity:
        parts.append(Text(f"{host.state}: {host.activity}", style="cyan"))
    if host.divergence:
        parts.append(Text(f"re-planned: {host.divergence}", style="yellow"))
    parts.append(_timeline(host, now))
    if host.migrations:
        parts.append(_migrations(host))
    if host.tasks:
        parts.append(_tasks(host))
    return Group(*parts)


def _title(host: HostView, now: float) -> Text:
    batch = f"batch {host.batch + 1}" if host.batch >= 0 else "not in the plan"
    title = Text.assemble(
        cells.mark(host.state),
        " ",
        (host.name, "bold"),
        "  ",
        cells.state_text(host.state),
        (f"  {batch}  ", "dim"),
        f"{host.version_before} → {host.version_after}",
        ("  ", ""),
        (cells.duration(host.duration(now)), "dim"),
    )
    title.no_wrap = True
    title.overflow = "ellipsis"
    return title


def _timeline(host: HostView, now: float) -> RenderableType:
    if not host.timeline:
        planned = f"{count(host.planned_out, 'VM')} out, {host.planned_back} back"
        estimate = cells.duration(host.estimate_seconds)
        return Text(f"Steps: not started ({planned}; about {estimate})", style="dim")
    parts: list[RenderableType] = [Text("Steps", style="bold underline")]
    table = _steps_table()
    for step in host.timeline:
        if step.ok is False:
            symbol = Text("✗", "bold red")
        elif step.ended is not None:
            symbol = Text("✓", "green")
        else:
            symbol = Text("▶", "bold yellow")
        took = (step.ended or now) - step.started
        table.add_row(
            symbol,
            cells.state_text(step.state),
            cells.clock(step.started),
            cells.duration(took),
            Text(step.detail, style="red" if step.ok is False else ""),
        )
        if step.evidence:
            # Under the step that failed, what its playbook or the hypervisor said, the
            # pane's whole width wide: why it failed, without leaving for the log file.
            parts += [table, _evidence(step.evidence)]
            table = _steps_table()
    if table.row_count:
        parts.append(table)
    return Group(*parts)


def _steps_table() -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column()
    table.add_column(no_wrap=True, min_width=len("evacuating"))  # the longest state
    table.add_column(style="dim", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(overflow="fold")
    return table


def _evidence(lines: tuple[str, ...]) -> RenderableType:
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, style="dim")
    table.add_column(overflow="fold", style="dim")  # a wrapped line stays right of the bar
    for line in lines[-EVIDENCE_ROWS:]:
        table.add_row("  │", Text(line))
    return table


def _migrations(host: HostView) -> RenderableType:
    views = list(host.migrations.values())
    order = {"failed": 0, "running": 1, "started": 2, "done": 3}
    views.sort(key=lambda m: order.get(m.status, 4))
    direction = views[0].direction
    done = sum(1 for m in views if m.status == "done")
    planned = host.planned_out if direction == "out" else host.planned_back
    title = f"Migrations {direction}: {done}/{max(planned, len(views))} done"
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, overflow="ellipsis", max_width=18)
    table.add_column(no_wrap=True, overflow="ellipsis", max_width=10)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for view in views[:MIGRATION_ROWS]:
        style = "red" if view.status == "failed" else "green" if view.status == "done" else ""
        table.add_row(
            Text(view.vm_name, style=style),
            Text(f"→ {view.dest_name}", style="dim"),
            cells.bar(view.progress, width=8, style="green" if view.status == "done" else "yellow"),
            Text(view.error, style="red"),
        )
    parts: list[RenderableType] = [Text(title, style="bold underline"), table]
    if len(views) > MIGRATION_ROWS:
        parts.append(Text(f"… and {len(views) - MIGRATION_ROWS} more", style="dim"))
    return Group(*parts)


def _tasks(host: HostView) -> RenderableType:
    lines = list(host.tasks)[-TASK_ROWS:]
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for line in lines:
        task = line.task + (f": {line.message}" if line.message else "")
        table.add_row(
            cells.clock(line.at),
            Text(line.status, style=cells.TASK_STYLE.get(line.status, "")),
            task,
        )
    title = f"Patch tasks ({lines[-1].playbook})"
    return Group(Text(title, style="bold underline"), table)


class HostDetail(VerticalScroll):
    """Scrolls when a host has more to say than the pane holds."""

    def compose(self) -> ComposeResult:
        yield Static(id="detail-body")

    def show(self, host: HostView | None, now: float) -> None:
        body = self.query_one("#detail-body", Static)
        if host is None:
            body.update(Text("No host matches the filter.", style="dim"))
            self.border_title = "Host"
            return
        self.border_title = f"Host {host.name}"
        body.update(render_host(host, now))
