"""Each key sends its command to the run and shows what it did.

The app runs headless with a recording stand-in for the Rollout and no worker; events
come from the scripted scenarios, fed as the bus would feed them.
"""

from __future__ import annotations

import io

import pytest
from recorder import RecordingRollout
from rich.console import Console
from scenario import RUN_ID, Script, failed, gate, midway, small_plan

from rollup.run.events import EventBus
from rollup.tui.app import RollupApp, build_app
from rollup.tui.dialogs import Confirm, Help
from rollup.tui.widgets.detail import HostDetail
from rollup.tui.widgets.host_table import HostTable
from rollup.tui.widgets.log import RunLog
from rollup.tui.widgets.run_header import RunHeader


def text_of(renderable: object) -> str:
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(renderable)
    return console.export_text()


def header(app: RollupApp) -> str:
    return text_of(app.screen.query_one(RunHeader).content)


def detail(app: RollupApp) -> str:
    return text_of(app.screen.query_one("#detail-body").content)


def notices(app: RollupApp) -> list[str]:
    return [n.message for n in app._notifications]


def app_at(script: Script) -> tuple[RollupApp, RecordingRollout]:
    rollout = RecordingRollout(script.plan, EventBus())
    app = build_app(script.plan, rollout, clock=lambda: script.now, run_id=RUN_ID, start_run=False)
    return app, rollout


async def started(app: RollupApp, script: Script, pilot) -> None:
    app.feed(*script.events)
    app.drain()
    await pilot.pause()


def host_id(script: Script, name: str) -> str:
    return next(s.host for s in script.plan.steps if s.host_name == name)


async def select(pilot, app: RollupApp, script: Script, name: str) -> None:
    table = app.screen.query_one(HostTable)
    table.focus()
    while table.selected != host_id(script, name):
        await pilot.press(
            "down" if table.shown.index(host_id(script, name)) > table.cursor_row else "up"
        )


async def test_p_asks_for_a_pause_and_says_it_comes_between_steps():
    script = midway(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        await pilot.press("p")
        assert rollout.requests == [("pause", None)]
        assert "pause requested" in header(app)
        await pilot.press("p")
        assert rollout.requests[-1] == ("resume", None)


async def test_p_resumes_a_paused_run():
    script = failed(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        assert "PAUSED" in header(app)
        await pilot.press("p")
        assert rollout.requests == [("resume", None)]
        assert "resuming" in notices(app)


async def test_y_approves_the_canary_gate():
    script = gate(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        assert "press y to approve" in header(app)
        await pilot.press("y")
        assert rollout.requests == [("approve", None)]
        assert any("approved" in n for n in notices(app))


async def test_y_sends_nothing_when_no_gate_waits():
    script = midway(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        await pilot.press("y")
        assert rollout.requests == []


async def test_s_skips_the_selected_host_after_asking():
    script = midway(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        await select(pilot, app, script, "h5")
        await pilot.press("s")
        assert isinstance(app.screen, Confirm)
        assert "Skip h5?" in text_of(app.screen.query_one("#question").content)
        await pilot.press("y")
        assert rollout.requests == [("skip", host_id(script, "h5"))]
        assert any("h5 will be skipped" in n for n in notices(app))


async def test_s_then_no_sends_nothing():
    script = midway(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        await select(pilot, app, script, "h6")
        await pilot.press("s", "n")
        assert rollout.requests == []
        assert not isinstance(app.screen, Confirm)


async def test_s_refuses_a_host_in_the_middle_of_its_upgrade():
    script = midway(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        await select(pilot, app, script, "h3")
        await pilot.press("s")
        assert rollout.requests == []
        assert any("only a host that has not started or has failed" in n for n in notices(app))


async def test_skipping_the_failed_host_of_a_paused_run_goes_on_without_it():
    script = failed(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        assert app.screen.query_one(HostTable).selected == host_id(script, "h2")
        await pilot.press("s", "y")
        assert rollout.requests == [("skip", host_id(script, "h2")), ("resume", None)]


async def test_r_retries_the_failed_step_of_the_selected_host():
    script = failed(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        assert "failed while patching" in detail(app)
        await pilot.press("r")
        assert rollout.requests == [("retry", host_id(script, "h2"))]
        assert any("retrying h2 from patching" in n for n in notices(app))


async def test_r_on_a_healthy_host_sends_nothing():
    script = midway(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        await pilot.press("r")
        assert rollout.requests == []


async def test_a_aborts_after_asking():
    script = midway(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        await pilot.press("a")
        assert isinstance(app.screen, Confirm)
        await pilot.press("y")
        assert rollout.requests == [("abort", None)]
        assert any("aborting" in n for n in notices(app))


async def test_a_then_escape_keeps_the_run_going():
    script = midway(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        await pilot.press("a", "escape")
        assert rollout.requests == []


@pytest.mark.parametrize(("size", "shown_first"), [((120, 40), True), ((80, 24), False)])
async def test_l_toggles_the_log(size, shown_first):
    script = midway(small_plan())
    app, _ = app_at(script)
    async with app.run_test(size=size) as pilot:
        await started(app, script, pilot)
        log = app.screen.query_one(RunLog)
        assert log.display is shown_first
        await pilot.press("l")
        assert log.display is not shown_first


async def test_slash_filters_hosts_by_name_or_state():
    script = midway(small_plan())
    app, _ = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        table = app.screen.query_one(HostTable)
        await pilot.press("slash", *"pending", "enter")
        assert [app.view.hosts[h].name for h in table.shown] == ["h5", "h6"]
        assert "pending" in str(table.border_title)
        await pilot.press("slash", "escape")
        assert len(table.shown) == 6


async def test_question_mark_opens_the_help_and_escape_closes_it():
    script = midway(small_plan())
    app, _ = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, Help)
        await pilot.press("escape")
        assert not isinstance(app.screen, Help)


async def test_clicking_a_row_shows_that_host():
    script = midway(small_plan())
    app, _ = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        table = app.screen.query_one(HostTable)
        row = table.shown.index(host_id(script, "h1"))
        await pilot.click(HostTable, offset=(4, 2 + row))
        await pilot.pause()
        assert table.selected == host_id(script, "h1")
        assert app.screen.query_one(HostDetail).border_title == "Host h1"
        assert "restoring" in detail(app)


async def test_clicking_a_footer_key_runs_its_binding():
    script = midway(small_plan())
    app, rollout = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        keys = {key.action: key for key in app.screen.query("FooterKey")}
        await pilot.click(keys["pause"])
        assert rollout.requests == [("pause", None)]


async def test_the_detail_follows_the_busy_host_until_the_operator_chooses():
    script = midway(small_plan())
    app, _ = app_at(script)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(app, script, pilot)
        table = app.screen.query_one(HostTable)
        assert table.selected == host_id(script, "h3")
        await pilot.press("up")
        assert table.selected == host_id(script, "h2")
        app.feed(*Script(script.plan).host("h5", "checking").events)
        app.drain()
        assert table.selected == host_id(script, "h2")
