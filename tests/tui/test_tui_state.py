"""The view model folds events into what the dashboard shows, without Textual."""

from __future__ import annotations

from rich.console import Console
from scenario import T0, YUM_FAILURE, Script, failed, midway, small_plan

from rollup.run.events import HostStateChanged, MigrationProgress, StepActivity
from rollup.tui.state import RUN_CHANGED, RunView
from rollup.tui.widgets.detail import render_host


def folded(script: Script) -> RunView:
    view = RunView(script.plan)
    for event in script.events:
        view.apply(event)
    return view


def by_name(view: RunView, name: str):
    return next(h for h in view.hosts.values() if h.name == name)


def test_hosts_start_pending_in_plan_order():
    plan = small_plan()
    view = RunView(plan)
    assert [h.name for h in view.hosts.values()] == [s.host_name for s in plan.steps]
    assert {h.state for h in view.hosts.values()} == {"pending"}
    assert view.progress() == 0.0


def test_a_finished_host_has_its_vms_out_and_back_and_its_new_version():
    view = folded(midway(small_plan()))
    h1 = by_name(view, "h1")
    assert h1.state == "done"
    assert (h1.out_done, h1.back_done) == (h1.planned_out, h1.planned_back)
    assert h1.version_after == "8.3.0"
    assert [step.state for step in h1.timeline][:3] == ["checking", "disabling", "evacuating"]
    assert all(step.ok for step in h1.timeline)


def test_evacuation_progress_counts_partial_migrations():
    view = folded(midway(small_plan()))
    h4 = by_name(view, "h4")
    assert h4.state == "evacuating"
    assert h4.out_done == 1
    assert abs(h4.step_progress() - (1.0 + 0.62 + 0.1) / 3) < 1e-9


def test_a_failure_keeps_where_and_why():
    view = folded(failed(small_plan()))
    h2 = by_name(view, "h2")
    assert h2.state == "failed"
    assert h2.failed_in == "patching"
    assert "No space left on device" in h2.error
    # The failed step keeps the end of the playbook's output; the steps that went well
    # have none.
    assert [(step.state, step.evidence) for step in h2.timeline if step.evidence] == [
        ("patching", YUM_FAILURE)
    ]
    assert view.state == "paused"
    assert any(line.level == "error" for line in view.log)


def test_running_migration_progress_redraws_its_host_but_is_not_logged():
    plan = small_plan()
    view = RunView(plan)
    step = plan.steps[0]
    move = step.evacuate[0]
    view.apply(HostStateChanged("r", step.host, step.host_name, "evacuating", "disabling", at=T0))
    logged = view.log_total
    changed = view.apply(
        MigrationProgress(
            "r", step.host, move.vm, move.vm_name, move.source, move.dest, "h2", 0.5, "running"
        )
    )
    assert changed == {step.host}
    assert view.log_total == logged
    assert RUN_CHANGED not in changed


def test_eta_follows_the_plan_first_then_the_observed_pace():
    plan = small_plan()
    view = RunView(plan)
    assert view.eta(T0) == plan.estimate_seconds
    view = folded(midway(plan))
    now = T0 + 1000
    done = view.progress()
    assert view.eta(now) == view.elapsed(now) * (1 - done) / done


def test_hosts_the_plan_leaves_out_show_as_skipped_with_the_reason():
    from strategies import make_pool

    from rollup.model import Policy
    from rollup.plan import planner

    pool = make_pool(
        {"h1": [4], "h2": [4], "h3": [4]}, versions={"h1": "8.2.1", "h2": "8.3.0", "h3": "8.2.1"}
    )
    plan = planner.plan(pool, Policy(target_version="8.3.0"), now=T0)
    view = RunView(plan)
    h2 = by_name(view, "h2")
    assert h2.state == "skipped"
    assert "8.3.0" in h2.reason


def test_what_a_long_step_says_shows_on_its_host_until_the_next_step():
    plan = small_plan()
    view = RunView(plan)
    step = plan.steps[0]
    view.apply(HostStateChanged("r", step.host, step.host_name, "patching", "evacuating", at=T0))
    said = "yum update: running for 1m 00s"
    changed = view.apply(StepActivity("r", step.host, step.host_name, "patching", said))
    host = by_name(view, step.host_name)
    assert changed >= {step.host} and host.activity == said
    console = Console(width=200, record=True)
    console.print(render_host(host, T0 + 60))
    assert f"patching: {said}" in console.export_text()
    view.apply(HostStateChanged("r", step.host, step.host_name, "rebooting", "patching", at=T0))
    assert by_name(view, step.host_name).activity == ""
