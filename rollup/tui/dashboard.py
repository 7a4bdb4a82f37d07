"""The dashboard screen: header, host table, detail pane, log and the keys that steer.

The screen owns no engine: keys become `Dashboard.Command` messages that the app turns
into `rollout.request(...)`; what the run did comes back as events folded into the
`RunView`, and `refresh_view` redraws only what they changed.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input

from rollup.tui.dialogs import Confirm, Help
from rollup.tui.state import RUN_CHANGED, RunView
from rollup.tui.widgets.detail import HostDetail
from rollup.tui.widgets.host_table import HostTable
from rollup.tui.widgets.log import RunLog
from rollup.tui.widgets.run_header import RunHeader

SKIPPABLE = ("pending", "checking", "failed")


class Dashboard(Screen[None]):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    BINDINGS = [
        Binding("p", "pause", "Pause/Resume", id="run.pause", tooltip="Takes effect between steps"),
        Binding("y", "approve", "Approve", id="run.approve", tooltip="Go on past the canary gate"),
        Binding("s", "skip", "Skip", id="run.skip", tooltip="Skip the selected host"),
        Binding("r", "retry", "Retry", id="run.retry", tooltip="Retry the failed step"),
        Binding("a", "abort", "Abort", id="run.abort", tooltip="Stop; the pool is left safe"),
        Binding("l", "toggle_log", "Log", id="run.log"),
        Binding("slash", "filter", "Filter", id="run.filter", tooltip="Filter hosts"),
        Binding("question_mark", "help", "Help", id="run.help"),
        Binding("q", "leave", "Quit", id="run.quit", tooltip="Detach; the run stays resumable"),
    ]

    class Command(Message):
        """Ask the run to do something: `pause`, `skip` with a host, …"""

        def __init__(self, command: str, host: str | None = None) -> None:
            super().__init__()
            self.command = command
            self.host = host

    class Leave(Message):
        """The operator wants to quit; the app decides whether to detach first."""

    def __init__(self, view: RunView, now: float) -> None:
        super().__init__()
        self.view = view
        self.now = now
        self.detaching = False
        self.pause_requested = False
        self.pattern = ""
        self.follow = True  # the cursor follows the busy host until the operator moves it
        self._log_written = 0

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        yield Input(placeholder="filter hosts by name or state, enter keeps it", id="filter")
        with Horizontal(id="main"):
            yield HostTable(id="hosts")
            yield HostDetail(id="detail")
        yield RunLog(id="log")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(HostTable)
        table.border_title = "Hosts"
        self.query_one(RunLog).border_title = "Log"
        table.load(self.view, self.now)
        table.focus()
        self.refresh_view({RUN_CHANGED, *self.view.hosts}, self.now)

    # -- redrawing ------------------------------------------------------------------------

    def refresh_view(self, changed: set[str], now: float) -> None:
        """Redraw what `changed` (from RunView.apply) touched; `now` drives the clocks."""
        self.now = now
        table = self.query_one(HostTable)
        if self.pattern and table.matching(self.view, self.pattern) != table.shown:
            # A state filter ("failed") gains or loses rows as hosts change state.
            self._reload_table()
        table.update_hosts(self.view, changed - {RUN_CHANGED}, now)
        if self.follow:
            self._follow_busy_host()
        selected = table.selected
        if selected is None or selected in changed:
            self._show_detail()
        if RUN_CHANGED in changed:
            if self.view.state == "paused" or self.view.finished is not None:
                self.pause_requested = False
            self._write_log()
            self.refresh_bindings()
        self.query_one(RunHeader).show(self.view, now, self.detaching, self.pause_requested)

    def tick(self, now: float) -> None:
        """Once a second: clocks move even when no event comes (a long reboot)."""
        busy = [h.id for h in self.view.hosts.values() if h.active]
        self.refresh_view(set(busy), now)

    def _write_log(self) -> None:
        new = min(self.view.log_total - self._log_written, len(self.view.log))
        if new > 0:
            self.query_one(RunLog).append(list(self.view.log)[-new:])
        self._log_written = self.view.log_total

    def _show_detail(self) -> None:
        selected = self.query_one(HostTable).selected
        host = self.view.hosts.get(selected) if selected else None
        self.query_one(HostDetail).show(host, self.now)

    def _follow_busy_host(self) -> None:
        table = self.query_one(HostTable)
        busy = [h for h in self.view.hosts.values() if h.active or h.state == "failed"]
        if not busy or table.selected in {h.id for h in busy}:
            return
        table.select(busy[0].id)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.query_one(HostTable).user_moved:
            self.follow = False  # the operator chose a host: stop jumping to the busy one
        self._show_detail()
        self.refresh_bindings()

    def _reload_table(self) -> None:
        table = self.query_one(HostTable)
        table.load(self.view, self.now, self.pattern)
        table.border_title = f"Hosts · filter “{self.pattern}”" if self.pattern else "Hosts"

    # -- keys -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        over = self.view.finished is not None
        if action == "approve":
            return self.view.state == "awaiting_approval" and not over
        if action == "retry":
            return self._selected_state() == "failed" and not over
        if action in ("pause", "skip", "abort"):
            return None if over or self.detaching else True
        return True

    def _selected_state(self) -> str | None:
        selected = self.query_one(HostTable).selected
        return self.view.hosts[selected].state if selected else None

    def _send(self, command: str, host: str | None = None) -> None:
        self.post_message(self.Command(command, host))

    def action_pause(self) -> None:
        if self.view.state == "paused" or self.pause_requested:
            self.pause_requested = False
            self._send("resume")
            self.notify("resuming")
        else:
            self.pause_requested = True
            self._send("pause")
            self.notify("pause requested: the run pauses between steps, no migration is cut")
        self.refresh_view({RUN_CHANGED}, self.now)

    def action_approve(self) -> None:
        if self.view.state != "awaiting_approval":
            self.notify("nothing waits for approval", severity="warning")
            return
        self._send("approve")
        self.notify("approved: the run goes on past the canary gate")

    def action_skip(self) -> None:
        selected = self.query_one(HostTable).selected
        if selected is None:
            return
        host = self.view.hosts[selected]
        if host.state not in SKIPPABLE:
            self.notify(
                f"{host.name} is {host.state}: only a host that has not started or has failed"
                " can be skipped",
                severity="warning",
            )
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            self._send("skip", host.id)
            if host.state == "failed" and self.view.state == "paused":
                # The run paused for this failure; skipping it means "go on without it".
                self._send("resume")
            self.notify(f"{host.name} will be skipped: it is not upgraded")

        self.app.push_screen(
            Confirm(
                f"Skip {host.name}?",
                f"{host.name} will not be upgraded in this run; it stays at"
                f" {host.version_before}"
                + (" and disabled until you enable it" if host.state == "failed" else "")
                + ".",
            ),
            answered,
        )

    def action_retry(self) -> None:
        selected = self.query_one(HostTable).selected
        if selected is None or self.view.hosts[selected].state != "failed":
            self.notify("only a failed host can be retried", severity="warning")
            return
        host = self.view.hosts[selected]
        self._send("retry", host.id)
        self.notify(f"retrying {host.name} from {host.failed_in}")

    def action_abort(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._send("abort")
                self.notify("aborting: no new step starts; the pool is left safe", timeout=8)

        self.app.push_screen(
            Confirm(
                "Abort the run?",
                "No new step starts. Every VM keeps running; HA and the pool lock are"
                " restored. Hosts already upgraded stay upgraded.",
            ),
            answered,
        )

    def action_toggle_log(self) -> None:
        # Wide screens show the log unless toggled off; narrow ones hide it unless toggled on.
        self.toggle_class("-log-toggled")

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.value = self.pattern
        field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.pattern = event.value.strip()
        self._reload_table()
        self._show_detail()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = bool(self.pattern)
        self.query_one(HostTable).focus()

    def key_escape(self) -> None:
        field = self.query_one("#filter", Input)
        if field.display:
            field.value = ""
            field.display = False
            self.query_one(HostTable).focus()

    def action_help(self) -> None:
        self.app.push_screen(Help())

    def action_leave(self) -> None:
        self.post_message(self.Leave())

    def start_detaching(self) -> None:
        self.detaching = True
        self.refresh_bindings()
        self.refresh_view({RUN_CHANGED}, self.now)
