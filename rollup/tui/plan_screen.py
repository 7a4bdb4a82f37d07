"""The plan screen: what the run will do, before anything changes.

Failing checks come first and in red, because they are the reason nothing may start;
then the order in batches with each host's VMs out and back, hosts left out, and the
estimate. With `confirm` the screen is the question "upgrade this pool now?".
"""

from __future__ import annotations

from collections import Counter

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from rollup.model import HostStep, Move, Plan
from rollup.output import pending
from rollup.text.plurals import count, verb
from rollup.text.units import format_duration, format_gib

_CHECK_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}
_CHECK_ORDER = ("fail", "warn", "pass")


def verdict(plan: Plan) -> RenderableType:
    steps = plan.steps
    facts = (
        f"{len(steps)} of {count(len(plan.pool.hosts), 'host')} in "
        f"{count(len(plan.batches), 'batch')} · "
        f"target {plan.policy.target_version or 'latest patches'} · "
        f"strategy {plan.policy.strategy} · {count(plan.migrations, 'live migration')} "
        f"({format_gib(plan.bytes_moved)}) · about {format_duration(plan.estimate_seconds)}"
    )
    if plan.feasible:
        return Panel(Text(facts), title="Plan: feasible", border_style="green", expand=True)
    failing = [c for c in plan.checks if c.status == "fail"]
    fail = f"{count(len(failing), 'check')} {verb(len(failing), 'fails', 'fail')}"
    text = Text(f"{fail}, so nothing may start:\n", style="bold red")
    for check in failing:
        text.append(f"  ✗ {check.name}: ", style="bold red")
        text.append(f"{check.reason}\n")
    text.append(facts, style="dim")
    return Panel(text, title="Plan: REFUSED", border_style="bold red", expand=True)


def checks_table(plan: Plan) -> RenderableType:
    table = Table(title="Checks", title_justify="left", expand=True, show_edge=False)
    table.add_column("", width=4, no_wrap=True)
    table.add_column("Check", no_wrap=True)
    table.add_column("Reason", ratio=1, overflow="fold")
    ordered = sorted(plan.checks, key=lambda c: _CHECK_ORDER.index(c.status))
    for check in ordered:
        style = _CHECK_STYLE[check.status]
        table.add_row(
            Text(check.status.upper(), style=style),
            Text(check.name, style=style if check.status != "pass" else ""),
            Text(check.reason, style="red" if check.status == "fail" else ""),
        )
    return table


def _moves(moves: tuple[Move, ...], names: dict[str, str], far_end: str) -> Text:
    """`3 · 12.0 GiB → h2 h3`: how many VMs, how much memory, and where to/from."""
    if not moves:
        return Text("-", style="dim")
    ends = Counter(getattr(m, far_end) for m in moves)
    where = " ".join(names.get(host, host) for host, _ in ends.most_common(3))
    if len(ends) > 3:
        where += " …"
    arrow = "→" if far_end == "dest" else "←"
    text = Text(f"{len(moves)} · {format_gib(sum(m.memory for m in moves))} ")
    text.append(f"{arrow} {where}", style="dim")
    return text


def batches_table(plan: Plan) -> RenderableType:
    names = {host.id: host.name for host in plan.pool.hosts}
    table = Table(
        title="Order",
        title_justify="left",
        expand=True,
        show_edge=False,
        caption=plan.concurrency.reason or None,
        caption_justify="left",
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("Host", no_wrap=True)
    table.add_column("Version", no_wrap=True)
    table.add_column("Updates", no_wrap=True)
    table.add_column("VMs out", ratio=1, overflow="fold")
    table.add_column("VMs back", ratio=1, overflow="fold")
    table.add_column("Time", justify="right", no_wrap=True)
    for batch in plan.batches:
        for i, step in enumerate(batch.steps):
            host = step.host_name + (" (master)" if step.host == plan.pool.master else "")
            out = _moves(step.evacuate, names, "dest")
            if step.stop:
                out.append(f" +{len(step.stop)} stop/start", style="yellow")
            zone = f" {step.zone}" if step.zone and i == 0 else ""
            table.add_row(
                f"{batch.index + 1}{zone}" if i == 0 else "",
                host,
                f"{step.version_before}→{_after(plan, step)}",
                pending.cell(step),
                out,
                _moves(step.restore, names, "source"),
                format_duration(step.estimate_seconds),
                end_section=i == len(batch.steps) - 1,
            )
    return table


def _after(plan: Plan, step: HostStep) -> str:
    return (plan.policy.target_version or "?") if step.upgrade else "patched"


def updates_table(plan: Plan) -> RenderableType | None:
    """Per host what it installs and what that demands: what a change board reads."""
    rows = pending.installs(plan)
    if not rows:
        return None
    table = Table(title="Updates", title_justify="left", expand=True, show_edge=False)
    table.add_column("Host", no_wrap=True)
    table.add_column("Installs", ratio=2, overflow="fold")
    table.add_column("Then", ratio=1, overflow="fold")
    for step, installed, then in rows:
        text = Text()
        for i, update in enumerate(installed):
            text.append(", " if i else "")
            text.append(update.label, style="bold" if update.severity == "High" else "")
        table.add_row(step.host_name, text, then)
    return table


def skipped_table(plan: Plan) -> RenderableType | None:
    if not plan.skipped:
        return None
    table = Table(title="Left out", title_justify="left", expand=True, show_edge=False)
    table.add_column("Host", no_wrap=True)
    table.add_column("Why", ratio=1, overflow="fold")
    for host in plan.skipped:
        table.add_row(Text(f"⊘ {host.host_name}", style="magenta"), host.reason)
    return table


def plan_renderable(plan: Plan) -> RenderableType:
    parts = [verdict(plan), checks_table(plan), Text(""), batches_table(plan)]
    for table in (updates_table(plan), skipped_table(plan)):
        if table is not None:
            parts += [Text(""), table]
    return Group(*parts)


class PlanScreen(Screen[bool]):
    """Dismissed with True to start the run (confirm mode only), False to leave."""

    BINDINGS = [
        Binding("enter,y", "start", "Start upgrade", id="plan.start"),
        Binding("escape,n,q", "leave", "Cancel", id="plan.cancel"),
    ]

    def __init__(self, plan: Plan, confirm: bool) -> None:
        super().__init__()
        self.plan = plan
        self.confirm = confirm

    def compose(self) -> ComposeResult:
        title = f"rollup · plan for pool {self.plan.pool_title}"
        yield Static(Text(title, style="bold"), id="plan-title")
        with VerticalScroll(id="plan-body"):
            yield Static(plan_renderable(self.plan))
        yield Static(self._question(), id="plan-question")
        yield Footer()

    def _question(self) -> Text:
        if not self.confirm:
            return Text("This is a plan only: nothing changes. q closes.", style="dim")
        if not self.plan.feasible:
            return Text("The plan is refused: fix the failing checks. q leaves.", style="red")
        return Text.assemble(
            ("Upgrade this pool now? ", "bold"),
            ("enter", "bold cyan"),
            " starts, ",
            ("escape", "bold cyan"),
            " cancels and changes nothing.",
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return self.confirm and self.plan.feasible
        return True

    def action_start(self) -> None:
        self.dismiss(True)

    def action_leave(self) -> None:
        self.dismiss(False)


class PlanOnlyScreen(PlanScreen):
    """`rollup plan --tui`: the same screen with nothing to confirm, only to close."""

    BINDINGS = [Binding("escape,q", "leave", "Close", id="plan.close")]

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, confirm=False)
