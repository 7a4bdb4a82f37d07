"""The Textual app and its entry points: `show_plan`, `run_dashboard` and `build_app`.

`build_app` is the test seam (Pilot and snapshot tests build the app with a fixed clock,
no worker, and feed events by hand); the entry points are what `rollup.commands` calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from rollup import bundled
from rollup.errors import EXIT_OK, EXIT_REFUSED
from rollup.model import Plan
from rollup.run.events import Event, EventBus, RunFinished
from rollup.tui.dashboard import Dashboard
from rollup.tui.inbox import EventInbox
from rollup.tui.plan_screen import PlanOnlyScreen, PlanScreen
from rollup.tui.state import RUN_CHANGED, RunView

REFRESH_HZ = 15  # fast enough to look live, slow enough to fold bursts into one redraw
# Folding stops after this long per tick and goes on at the next one, so a backlog of
# events cannot freeze keys and mouse; the screen catches up within a few ticks.
DRAIN_BUDGET_SECONDS = 0.025
Clock = Callable[[], float]


class Steerable(Protocol):
    """What the app needs from a run: `Rollout` has it, and so does a test's recorder."""

    plan: Plan

    def request(self, command: str, host: str | None = None) -> None: ...

    async def execute(self) -> RunFinished: ...


class RollupApp(App[RunFinished | None]):
    CSS_PATH = bundled.path("tui/rollup.tcss")
    TITLE = "rollup"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        # Quitting by the usual keys must not strand a run in a thread: it detaches too.
        Binding("ctrl+q,ctrl+c", "leave", "Quit", show=False, priority=True, id="app.quit"),
    ]

    def __init__(
        self,
        plan: Plan,
        rollout: Steerable | None = None,
        bus: EventBus | None = None,
        confirm: bool = False,
        clock: Clock = time.time,
        run_id: str = "",
        start_run: bool = True,
    ) -> None:
        super().__init__()
        self.plan = plan
        self.rollout = rollout
        self.bus = bus
        self.confirm = confirm
        self.clock = clock
        self.start_run = start_run
        self.view = RunView(plan, run_id)
        self.inbox = EventInbox()
        self.dashboard: Dashboard | None = None
        self.finished: RunFinished | None = None
        self.error: BaseException | None = None
        self.run_over = False
        self._last_tick = 0.0

    # -- screens --------------------------------------------------------------------------

    def on_mount(self) -> None:
        if self.rollout is None:
            self.push_screen(PlanOnlyScreen(self.plan), lambda _: self.exit(None))
        elif self.confirm:
            self.push_screen(PlanScreen(self.plan, confirm=True), self._confirmed)
        else:
            self.start_dashboard()

    def _confirmed(self, start: bool | None) -> None:
        if start:
            self.start_dashboard()
        else:
            self.exit(None)

    def start_dashboard(self) -> None:
        self.dashboard = Dashboard(self.view, self.clock())
        self.push_screen(self.dashboard)
        if self.bus is not None:
            self.bus.subscribe(self.inbox)
        self.set_interval(1 / REFRESH_HZ, self.drain)
        if self.start_run and self.rollout is not None:
            self.run_worker(self.rollout.execute, name="rollout", thread=True, exit_on_error=False)

    # -- events in ------------------------------------------------------------------------

    def feed(self, *events: Event) -> None:
        """Hand events in as the bus would (tests and the benchmark use this)."""
        for event in events:
            self.inbox(event)

    def drain(self) -> None:
        """Fold every waiting event into the view and redraw what changed, once."""
        changed: set[str] = set()
        deadline = time.perf_counter() + DRAIN_BUDGET_SECONDS
        while time.perf_counter() < deadline:
            events = self.inbox.take(500)
            if not events:
                break
            for event in events:
                changed |= self.view.apply(event)
        now = self.clock()
        if self.dashboard is None or not self.dashboard.is_mounted:
            return
        if changed:
            self.dashboard.refresh_view(changed, now)
        if now - self._last_tick >= 1.0:
            self._last_tick = now
            self.dashboard.tick(now)

    # -- commands out ---------------------------------------------------------------------

    def on_dashboard_command(self, message: Dashboard.Command) -> None:
        if self.rollout is not None:
            self.rollout.request(message.command, message.host)

    def on_dashboard_leave(self, message: Dashboard.Leave) -> None:
        self.action_leave()

    def action_leave(self) -> None:
        if self.dashboard is None or self.run_over or self.rollout is None or not self.start_run:
            self.exit(self.finished)
            return
        if self.dashboard.detaching:
            self.notify("still waiting for the run to reach a safe point", severity="warning")
            return
        self.rollout.request("detach")
        self.dashboard.start_detaching()
        self.notify(
            "detaching: the run stops at the next safe point and stays resumable with"
            f" `rollup resume {self.view.run_id or 'RUN'}`",
            timeout=10,
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != "rollout" or not event.worker.is_finished:
            return
        self.run_over = True
        if event.state == WorkerState.SUCCESS:
            self.finished = event.worker.result
        elif event.state == WorkerState.ERROR:
            self.error = event.worker.error
            self.notify(f"the run stopped with an error: {self.error}", severity="error")
        self.drain()
        if self.dashboard is not None:
            self.dashboard.refresh_view({RUN_CHANGED}, self.clock())
            if self.dashboard.detaching or self.error is not None:
                self.exit(self.finished)

    def on_unmount(self) -> None:
        if self.bus is not None:
            self.bus.unsubscribe(self.inbox)


def build_app(
    plan: Plan,
    rollout: Steerable | None = None,
    bus: EventBus | None = None,
    confirm: bool = False,
    clock: Clock = time.time,
    run_id: str = "",
    start_run: bool = True,
) -> RollupApp:
    """The app, unstarted: tests pass a fixed clock and `start_run=False` to feed events."""
    return RollupApp(plan, rollout, bus, confirm, clock, run_id, start_run)


def show_plan(plan: Plan) -> int:
    """`rollup plan --tui`: the plan on its own; 0 if it is feasible, else 3."""
    build_app(plan).run()
    return EXIT_OK if plan.feasible else EXIT_REFUSED


def run_dashboard(rollout: Steerable, bus: EventBus, confirm: bool) -> RunFinished | None:
    """Confirm the plan (if asked), then follow and steer the run until it ends or detaches.

    Returns how the run finished, or None when the operator cancelled before it started.
    An error that stopped the run is raised again here, for the CLI to report.
    """
    run_id = getattr(getattr(rollout, "ctx", None), "run_id", "")
    app = build_app(rollout.plan, rollout, bus, confirm=confirm, run_id=run_id)
    finished = app.run()
    if app.error is not None:
        raise app.error
    return finished
