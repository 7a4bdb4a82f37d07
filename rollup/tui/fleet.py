"""The fleet view: every pool of a `rollup run --pools` on one screen, each one's dashboard
a key away.

The pools screen shows, per pool, where its run is (waiting for a slot, running, its
outcome), how many hosts are done and what the busiest host is doing. Enter opens that
pool's own dashboard, with the same keys as a run of one pool (they steer that pool
only); q there comes back here. q here detaches every pool at its next safe point.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from rollup import bundled
from rollup.run.events import EventBus
from rollup.tui.app import DRAIN_BUDGET_SECONDS, REFRESH_HZ, Clock
from rollup.tui.dashboard import Dashboard
from rollup.tui.inbox import EventInbox
from rollup.tui.state import RUN_CHANGED, RunView

BUSY = ("pending", "done", "skipped", "failed")


@dataclass
class PoolEntry:
    name: str
    view: RunView | None = None  # once the pool's run has a plan and a run id
    inbox: EventInbox = field(default_factory=EventInbox)
    shown: tuple[str, ...] = ()  # the row as last drawn: redrawn only when it changes


def pool_cells(entry: PoolEntry, outcome: Any) -> tuple[str, str, str, str, str]:
    """Pool, state, hosts done of planned, the busiest host now, run id."""
    view = entry.view
    if view is None:
        state = outcome.summary if outcome is not None else "waiting for a slot"
        return entry.name, state, "-", "", ""
    hosts = list(view.hosts.values())
    planned = [h for h in hosts if h.batch >= 0]
    done = sum(1 for h in planned if h.state == "done")
    busy = next((h for h in planned if h.state not in BUSY), None)
    now = f"{busy.name} {busy.state}" if busy is not None else ""
    state = outcome.summary if outcome is not None else view.state.replace("_", " ")
    return entry.name, state, f"{done}/{len(planned)}", now, view.run_id


class PoolsScreen(Screen[None]):
    # Enter is the table's own (RowSelected): a binding here would open the pool twice.
    BINDINGS = [Binding("q", "leave", "Quit", id="fleet.quit", tooltip="Detach every pool")]

    def compose(self) -> ComposeResult:
        yield Static(id="fleet-header")
        yield DataTable(id="pools", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.border_title = "Pools"
        app = self.fleet_app
        # Sized for what comes later: the cells start empty and a column does not widen.
        table.add_column("Pool", width=max(len(name) for name in app.entries))
        table.add_column("State", width=48)
        table.add_column("Hosts", width=6)
        table.add_column("Now", width=18)
        table.add_column("Run", width=22)
        for entry in app.entries.values():
            table.add_row(*pool_cells(entry, None), key=entry.name)
        table.focus()
        self.header(
            f"{len(app.entries)} pools, up to {app.parallel} at once."
            " Enter: a pool's dashboard · q: detach every pool"
        )

    @property
    def fleet_app(self) -> FleetApp:
        app = self.app
        assert isinstance(app, FleetApp)
        return app

    def show(self, entry: PoolEntry, outcome: Any) -> None:
        cells = pool_cells(entry, outcome)
        if cells == entry.shown:
            return
        table = self.query_one(DataTable)
        for column, value in enumerate(cells):
            if entry.shown[column : column + 1] != (value,):
                table.update_cell(entry.name, table.ordered_columns[column].key, value)
        entry.shown = cells

    def header(self, text: str) -> None:
        self.query_one("#fleet-header", Static).update(text)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.fleet_app.open_pool(str(event.row_key.value))

    def action_leave(self) -> None:
        self.fleet_app.action_leave()


class FleetApp(App[list[Any] | None]):
    CSS_PATH = bundled.path("tui/rollup.tcss")
    TITLE = "rollup: pools"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("ctrl+q,ctrl+c", "leave", "Quit", show=False, priority=True, id="app.quit"),
    ]

    def __init__(self, fleet: Any, parallel: int, clock: Clock = time.time) -> None:
        super().__init__()
        self.fleet = fleet
        self.parallel = parallel
        self.clock = clock
        self.entries = {config.name: PoolEntry(config.name) for config in fleet.pools}
        self._lock = threading.Lock()
        self.pools_screen = PoolsScreen()
        self.open: str | None = None  # the pool whose dashboard is showing
        self.dashboard: Dashboard | None = None
        self.outcomes: list[Any] | None = None
        self.error: BaseException | None = None
        self._last_tick = 0.0

    def on_mount(self) -> None:
        self.push_screen(self.pools_screen)
        self.set_interval(1 / REFRESH_HZ, self.drain)
        self.run_worker(self._work, name="fleet", thread=True, exit_on_error=False)

    def _work(self) -> list[Any]:
        outcomes: list[Any] = self.fleet.run(self.parallel)
        return outcomes

    def attach(self, pool: str, rollout: Any) -> None:
        """Called from the pool's thread before its run starts: follow its events."""
        entry = self.entries[pool]
        bus: EventBus = rollout.ctx.bus
        bus.subscribe(entry.inbox)
        with self._lock:
            entry.view = RunView(rollout.plan, rollout.ctx.run_id)

    def drain(self) -> None:
        deadline = time.perf_counter() + DRAIN_BUDGET_SECONDS
        now = self.clock()
        for entry in self.entries.values():
            with self._lock:
                view = entry.view
            changed: set[str] = set()
            if view is not None:
                while time.perf_counter() < deadline:
                    events = entry.inbox.take(500)
                    if not events:
                        break
                    for event in events:
                        changed |= view.apply(event)
            if self.pools_screen.is_mounted:
                self.pools_screen.show(entry, self.fleet.outcomes.get(entry.name))
            dashboard = self.dashboard
            if self.open == entry.name and dashboard is not None and dashboard.is_mounted:
                if changed:
                    dashboard.refresh_view(changed, now)
                if now - self._last_tick >= 1.0:
                    self._last_tick = now
                    dashboard.tick(now)

    def open_pool(self, pool: str) -> None:
        view = self.entries[pool].view
        if view is None:
            self.notify(f"pool {pool} has not started yet", severity="warning")
            return
        self.open = pool
        self.dashboard = Dashboard(view, self.clock())
        self.push_screen(self.dashboard)

    def on_dashboard_command(self, message: Dashboard.Command) -> None:
        rollout = self.fleet.rollout(self.open) if self.open else None
        if rollout is not None:
            rollout.request(message.command, message.host)

    def on_dashboard_leave(self, message: Dashboard.Leave) -> None:
        self.open, self.dashboard = None, None
        self.pop_screen()

    def action_leave(self) -> None:
        if self.outcomes is not None or self.error is not None:
            self.exit(self.outcomes)
            return
        if self.fleet.stopping.is_set():
            self.notify("still waiting for the pools to reach a safe point", severity="warning")
            return
        self.fleet.stop()
        self.notify(
            "detaching: every pool stops at its next safe point and stays resumable with"
            " `rollup resume RUN`",
            timeout=10,
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != "fleet" or not event.worker.is_finished:
            return
        if event.state == WorkerState.SUCCESS:
            self.outcomes = event.worker.result
        elif event.state == WorkerState.ERROR:
            self.error = event.worker.error
        self.drain()
        if self.dashboard is not None:
            self.dashboard.refresh_view({RUN_CHANGED}, self.clock())
        if self.fleet.stopping.is_set() or self.error is not None:
            self.exit(self.outcomes)
            return
        self.pools_screen.header("Every pool is finished. q: quit")


def run_fleet_dashboard(fleet: Any, parallel: int) -> list[Any]:
    """The fleet under the TUI until the operator quits; each pool's outcome."""
    app = FleetApp(fleet, parallel)
    fleet.on_rollout = app.attach
    outcomes = app.run()
    if app.error is not None:
        raise app.error
    if outcomes is None:  # quit before the fleet ended: wait for the safe points
        outcomes = fleet.outcomes_when_done()
    return list(outcomes)
