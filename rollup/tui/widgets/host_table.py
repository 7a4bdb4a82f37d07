"""The host table: one row per host with its state, step progress, VMs and versions.

Rows are keyed by host id and only changed cells are rewritten, so a burst of migration
events costs a few cell updates per redraw, not a table rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import DataTable

from rollup.tui import cells
from rollup.tui.state import HostView, RunView

# (label, key, width); widths are fixed because cells are updated in place and
# DataTable only measures content when a row is added. None: measured from the plan.
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("", "mark", 1),
    ("Host", "host", None),
    ("State", "state", 10),
    ("Step", "step", 10),
    ("Out", "out", 5),
    ("Back", "back", 5),
    ("Version", "version", None),
    ("Time", "time", 7),
)


def row(host: HostView, now: float) -> dict[str, object]:
    """The cells of one host's row, by column key."""
    version = f"{host.version_before}→{host.version_after}"
    if host.state == "done":
        version_text = Text(version, style="green")
    else:
        version_text = Text(version, style="dim" if host.state in ("pending", "skipped") else "")
    step: Text
    if host.state == "failed":
        step = Text(host.failed_in, style="red")
    elif not host.active:
        step = Text("")
    else:
        step = cells.bar(host.step_progress(), width=5)
    return {
        "mark": cells.mark(host.state),
        "host": Text(host.name, style="bold" if host.active else ""),
        "state": cells.state_text(host.state),
        "step": step,
        "out": _count(host.out_done, host.planned_out),
        "back": _count(host.back_done, host.planned_back),
        "version": version_text,
        "time": Text(cells.duration(host.duration(now)), style="" if host.active else "dim"),
    }


def _count(done: int, planned: int) -> Text:
    if planned == 0 and done == 0:
        return Text("-", style="dim")
    return Text(f"{done}/{planned}", style="green" if done >= planned else "")


class HostTable(DataTable[object]):
    """Hosts in plan order; the cursor row is the host the detail pane shows."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.shown: list[str] = []
        self.user_moved = False  # set once the operator moves the cursor by key or mouse

    def action_cursor_up(self) -> None:
        self.user_moved = True
        super().action_cursor_up()

    def action_cursor_down(self) -> None:
        self.user_moved = True
        super().action_cursor_down()

    def on_click(self) -> None:
        self.user_moved = True

    def load(self, view: RunView, now: float, pattern: str = "") -> None:
        """(Re)build the rows, keeping only hosts whose name or state contains `pattern`."""
        if not self.columns:
            measured = {
                "host": max((len(h.name) for h in view.hosts.values()), default=4),
                "version": max(len(str(row(h, now)["version"])) for h in view.hosts.values()),
            }
            for label, key, width in COLUMNS:
                self.add_column(label, key=key, width=width or max(measured[key], len(label)))
        selected = self.selected
        self.clear()
        self.shown = self.matching(view, pattern)
        for host_id in self.shown:
            cells_by_key = row(view.hosts[host_id], now)
            self.add_row(*(cells_by_key[key] for _, key, _ in COLUMNS), key=host_id)
        if selected in self.shown:
            self.move_cursor(row=self.shown.index(selected), animate=False)

    @staticmethod
    def matching(view: RunView, pattern: str) -> list[str]:
        pattern = pattern.lower()
        return [
            host.id
            for host in view.hosts.values()
            if not pattern or pattern in host.name.lower() or pattern in host.state
        ]

    def update_hosts(self, view: RunView, host_ids: Iterable[str], now: float) -> None:
        shown = set(self.shown)
        for host_id in host_ids:
            if host_id not in shown:
                continue
            for key, value in row(view.hosts[host_id], now).items():
                self.update_cell(host_id, key, value)

    @property
    def selected(self) -> str | None:
        if not self.shown or not 0 <= self.cursor_row < len(self.shown):
            return None
        return self.shown[self.cursor_row]

    def select(self, host_id: str) -> None:
        if host_id in self.shown:
            self.move_cursor(row=self.shown.index(host_id), animate=False)
