"""What the screens look like, at 120x40 and at 80x24, with the clock frozen.

Update after a deliberate change with `pytest tests/tui --snapshot-update`, then look at
the SVGs under tests/tui/__snapshots__ before committing them.
"""

from __future__ import annotations

import pytest
from recorder import RecordingRollout
from scenario import RUN_ID, T0, Script, failed, gate, midway, patch_plan, small_plan

from rollup.run.events import EventBus
from rollup.tui.app import RollupApp, build_app

SIZES = [(120, 40), (80, 24)]


def dashboard(script: Script) -> tuple[RollupApp, object]:
    rollout = RecordingRollout(script.plan, EventBus())
    app = build_app(script.plan, rollout, clock=lambda: script.now, run_id=RUN_ID, start_run=False)

    async def fed(pilot) -> None:
        app.feed(*script.events)
        app.drain()
        await pilot.pause()

    return app, fed


@pytest.mark.parametrize("size", SIZES, ids=["120x40", "80x24"])
def test_plan_screen_asks_before_anything_changes(snap_compare, size):
    plan = small_plan()
    app = build_app(plan, RecordingRollout(plan, EventBus()), confirm=True, clock=lambda: T0)
    assert snap_compare(app, terminal_size=size)


def test_a_patch_plan_says_what_each_host_installs_and_what_follows(snap_compare):
    plan = patch_plan()
    app = build_app(plan, RecordingRollout(plan, EventBus()), confirm=True, clock=lambda: T0)
    assert snap_compare(app, terminal_size=(120, 40))


@pytest.mark.parametrize("size", SIZES, ids=["120x40", "80x24"])
def test_refused_plan_puts_the_failing_check_first(snap_compare, size):
    assert snap_compare(build_app(small_plan(feasible=False)), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=["120x40", "80x24"])
def test_dashboard_midway(snap_compare, size):
    app, fed = dashboard(midway(small_plan()))
    assert snap_compare(app, terminal_size=size, run_before=fed)


@pytest.mark.parametrize("size", SIZES, ids=["120x40", "80x24"])
def test_dashboard_with_a_failed_host(snap_compare, size):
    app, fed = dashboard(failed(small_plan()))
    assert snap_compare(app, terminal_size=size, run_before=fed)


def test_dashboard_at_the_canary_gate(snap_compare):
    app, fed = dashboard(gate(small_plan()))
    assert snap_compare(app, terminal_size=(120, 40), run_before=fed)


def test_help(snap_compare):
    app, fed = dashboard(midway(small_plan()))

    async def helped(pilot) -> None:
        await fed(pilot)
        await pilot.press("question_mark")

    assert snap_compare(app, terminal_size=(120, 40), run_before=helped)
