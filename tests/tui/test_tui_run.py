"""The whole path with a worker: confirm the plan, follow the run, detach with q."""

from __future__ import annotations

import asyncio

from recorder import RecordingRollout
from scenario import RUN_ID, YUM_FAILURE, failed, midway, small_plan
from test_tui_keys import detail, header

from rollup.run.events import EventBus
from rollup.tui.app import build_app
from rollup.tui.dashboard import Dashboard
from rollup.tui.plan_screen import PlanScreen


async def wait_for(condition, pilot, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("timed out")


async def test_cancel_on_the_plan_screen_starts_nothing():
    plan = small_plan()
    bus = EventBus()
    rollout = RecordingRollout(plan, bus)
    app = build_app(plan, rollout, bus, confirm=True)
    async with app.run_test(size=(120, 40)) as pilot:
        assert isinstance(app.screen, PlanScreen)
        await pilot.press("escape")
        await pilot.pause()
    assert app.return_value is None
    assert not rollout.started.is_set()
    assert rollout.requests == []


async def test_q_detaches_says_so_and_returns_once_the_run_has_paused():
    plan = small_plan()
    bus = EventBus()
    script = midway(plan)
    rollout = RecordingRollout(plan, bus, script.events)
    app = build_app(plan, rollout, bus, confirm=True, run_id=RUN_ID)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("enter")
        assert isinstance(app.screen, Dashboard)
        await wait_for(lambda: app.view.events_applied == len(script.events), pilot)
        assert "RUNNING" in header(app)
        await pilot.press("q")
        assert ("detach", None) in rollout.requests
        assert any(f"rollup resume {RUN_ID}" in n.message for n in app._notifications)
        await wait_for(lambda: app.return_value is not None, pilot)
    assert app.return_value.outcome == "paused"


async def test_events_from_another_thread_reach_the_screen():
    plan = small_plan()
    bus = EventBus()
    script = midway(plan)
    app = build_app(plan, RecordingRollout(plan, bus), bus, start_run=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.to_thread(lambda: [bus.emit(e) for e in script.events])
        await wait_for(lambda: app.view.events_applied == len(script.events), pilot)
        assert app.view.state == "running"


async def test_a_failed_step_shows_the_end_of_its_output_under_it_in_the_detail_pane():
    plan = small_plan()
    bus = EventBus()
    script = failed(plan)
    app = build_app(plan, RecordingRollout(plan, bus), bus, start_run=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.to_thread(lambda: [bus.emit(e) for e in script.events])
        await wait_for(lambda: app.view.events_applied == len(script.events), pilot)
        await pilot.pause()
        shown = [line.strip() for line in detail(app).splitlines()]
    # The failed host is selected: under its patching step, the last lines of the
    # playbook's output, each behind a bar (a line too long for the pane wraps under
    # itself), then the rest of the pane.
    step = next(i for i, line in enumerate(shown) if line.startswith("✗ patching"))
    end = shown.index("Migrations out: 4/4 done")
    bars = [line.removeprefix("│ ") for line in shown[step:end] if line.startswith("│")]
    assert len(bars) == len(YUM_FAILURE)
    for bar, said in zip(bars, YUM_FAILURE, strict=True):
        assert bar and said.startswith(bar), (bar, said)
