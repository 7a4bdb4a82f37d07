"""The run header: pool, run id, state, elapsed time, overall progress and ETA.

The third line is the one thing the operator should know now — a gate waiting for `y`,
why the run paused, that it is detaching, or how it ended.
"""

from __future__ import annotations

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from rollup.tui import cells
from rollup.tui.state import RunView


def banner(view: RunView, detaching: bool, pause_requested: bool = False) -> Text:
    if detaching and view.finished is None:
        return Text(
            "detaching: the run stops at the next safe point and stays resumable with"
            f" `rollup resume {view.run_id}`",
            style="bold yellow",
        )
    if view.finished is not None:
        style = "bold green" if view.finished.outcome == "completed" else "bold yellow"
        if view.finished.outcome in ("failed", "aborted"):
            style = "bold red"
        return Text(f"{view.finished.outcome}: {view.finished.message} — q to leave", style)
    if view.state == "awaiting_approval":
        return Text(f"press y to approve, a to abort — {view.reason}", style="bold yellow")
    if view.state == "paused":
        return Text(f"p resumes — paused: {view.reason}", style="yellow")
    if view.state == "planned":
        return Text("starting…", style="dim")
    if pause_requested and view.state == "running":
        return Text(
            "pause requested: the run pauses between steps, no migration is cut — p resumes",
            style="yellow",
        )
    if view.state == "running":
        return Text("running — p pauses between steps, ? explains every key", style="dim")
    return Text(view.reason, style="dim")


class RunHeader(Static):
    def show(
        self, view: RunView, now: float, detaching: bool = False, pause_requested: bool = False
    ) -> None:
        counts = view.counts()
        eta = view.eta(now)
        first = Table.grid(expand=True, padding=(0, 1))
        first.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        first.add_column(justify="right", no_wrap=True)
        title = Text.assemble(
            ("rollup ", "bold"),
            cells.run_state_text(view.state),
            ("  pool ", "dim"),
            (view.pool_name, "bold cyan"),
            ("  run ", "dim"),
            (view.run_id or "-", "cyan"),
        )
        times = Text.assemble(
            ("elapsed ", "dim"),
            cells.duration(view.elapsed(now)),
            ("  ETA ", "dim"),
            cells.duration(eta) if eta is not None else "-",
        )
        first.add_row(title, times)
        second = Table.grid(expand=True, padding=(0, 1))
        second.add_column(ratio=1)
        second.add_column(justify="right", no_wrap=True)
        done = view.progress()
        progress = Table.grid()
        progress.add_column(width=5)
        progress.add_column(ratio=1)
        progress.add_row(Text(f"{done * 100:3.0f}% "), ProgressBar(total=1.0, completed=done))
        tally = Text.assemble(
            (f"{counts['done']}", "green"),
            (" done ", "dim"),
            (f"{counts['active']}", "yellow"),
            (" busy ", "dim"),
            (f"{counts['failed']}", "bold red" if counts["failed"] else ""),
            (" failed ", "dim"),
            f"{counts['skipped']}",
            (" skipped ", "dim"),
            f"{counts['pending']}",
            (" to go ", "dim"),
            f"{view.migrations_done}",
            (" moved", "dim"),
        )
        second.add_row(progress, tally)
        last = banner(view, detaching, pause_requested)
        last.no_wrap = True
        last.overflow = "ellipsis"
        self.update(Group(first, second, last))
