"""How single values look on screen: states, marks, bars, durations and clock times.

Shared by the table, the detail pane and the header so a state has one colour and one
mark everywhere. Bars are plain text so a table cell can hold one and stays cheap to redraw.
"""

from __future__ import annotations

import time

from rich.text import Text

from rollup.text.units import format_duration

STATE_STYLE = {
    "pending": "dim",
    "checking": "cyan",
    "disabling": "yellow",
    "evacuating": "bold yellow",
    "patching": "bold magenta",
    "rebooting": "bold blue",
    "verifying": "cyan",
    "enabling": "yellow",
    "restoring": "bold yellow",
    "done": "green",
    "failed": "bold white on red",
    "skipped": "dim italic",
}
RUN_STYLE = {
    "planned": "dim",
    "running": "bold green",
    "paused": "bold yellow",
    "awaiting_approval": "bold black on yellow",
    "completed": "bold green",
    "failed": "bold white on red",
    "aborted": "bold white on red",
}
# Marks read without colour too: ✗ failed, ⊘ skipped, ✓ done, ▶ working, · waiting.
MARKS = {"failed": ("✗", "bold red"), "skipped": ("⊘", "magenta"), "done": ("✓", "green")}
LEVEL_STYLE = {"info": "", "warning": "yellow", "error": "bold red"}
TASK_STYLE = {
    "ok": "green",
    "changed": "yellow",
    "failed": "bold red",
    "unreachable": "bold red",
    "skipped": "dim",
    "started": "cyan",
}


def mark(state: str) -> Text:
    if state in MARKS:
        symbol, style = MARKS[state]
        return Text(symbol, style=style)
    if state == "pending":
        return Text("·", style="dim")
    return Text("▶", style="bold yellow")


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def run_state_text(state: str) -> Text:
    label = "awaiting approval" if state == "awaiting_approval" else state
    return Text(f" {label.upper()} ", style=RUN_STYLE.get(state, "bold"))


def bar(fraction: float | None, width: int = 10, style: str = "yellow") -> Text:
    """`██████░░░░ 60%`; None (not measurable) shows a dim track with `…`."""
    if fraction is None:
        return Text("░" * width + "   …", style="dim")
    fraction = min(1.0, max(0.0, fraction))
    full = round(fraction * width)
    text = Text("█" * full, style=style)
    text.append("░" * (width - full), style="dim")
    text.append(f" {fraction * 100:3.0f}%")
    return text


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return format_duration(seconds)


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))
