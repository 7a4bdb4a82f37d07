"""Policies a user sets in the inventory or by flag, seen on a lab pool."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime
from pathlib import Path

from rollup.commands.session import open_session
from rollup.config import inventory
from rollup.lab.packages import Installed, stream_of
from rollup.plan import planner
from rollup.remote.patcher import AnsiblePatcher
from rollup.run.context import RunContext
from rollup.run.events import Event, EventBus, HostStateChanged
from rollup.run.journal import Journal
from rollup.run.rollout import Rollout, RunOptions
from tests.browser import render
from tests.rollout.conftest import Lab, read_events
from tests.rollout.reports import junit_cases, valid_events
from tests.rollout.test_run_lab import TARGET, assert_upgraded_and_whole, running


def states(lab: Lab, host: str) -> list[str]:
    with sqlite3.connect(lab.state / "journal.sqlite") as db:
        rows = db.execute(
            "SELECT state FROM transitions WHERE host_name = ? ORDER BY seq", (host,)
        ).fetchall()
    return [row[0] for row in rows]


def test_a_patch_that_needs_no_reboot_skips_the_reboot(lab: Lab):
    # Every host has all of its release's updates but a curl fix published since: the
    # lab's patch (yum) installs it, and curl takes effect without a reboot.
    pool = lab.running.pool
    stream = stream_of(next(iter(pool.hosts.values())).version)
    for host in pool.hosts.values():
        latest = pool.repository.latest(stream)
        host.machine.set_packages(
            {name: Installed(b.version, b.release, time.time()) for name, b in latest.items()}
        )
    pool.repository.publish(["userspace"], stream)
    before = lab.snapshot()
    inventory_file = lab.write_inventory(drop=("rollup_target_version",))
    result = lab.rollup("run", str(inventory_file), "--yes", "--no-tui")
    assert result.returncode == 0, result.stderr
    after = lab.snapshot()
    assert "rebooting" not in states(lab, "h2")
    assert "the patch needs no reboot" in result.stderr
    assert [h.boot_mark for h in after.hosts] == [h.boot_mark for h in before.hosts]
    assert running(after) == running(before)


def test_on_failure_continue_upgrades_the_other_hosts_and_exits_1(roomy_lab: Lab, tmp_path: Path):
    lab = roomy_lab
    before = lab.snapshot()
    lab.set_faults({"hosts": {"h2": {"fail_patch": True}}})
    junit = tmp_path / "rollup.xml"
    result = lab.rollup(
        "run",
        str(lab.inventory),
        "--yes",
        "--no-tui",
        "--on-failure",
        "continue",
        "--json",
        "--junit",
        str(junit),
    )
    assert result.returncode == 1, result.stderr
    finished = valid_events(result.stdout)[-1]
    assert (finished["kind"], finished["outcome"], finished["exit_code"]) == (
        "run-finished",
        "failed",
        1,
    )
    assert (finished["hosts_done"], finished["hosts_failed"]) == (3, 1)
    suite, cases = junit_cases(junit)
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "0")
    assert [name for name, case in cases.items() if case.find("failure") is not None] == ["h2"]
    failure = cases["h2"].find("failure")
    assert failure is not None and failure.get("type") == "PLAYBOOK_FAILED"
    assert "lab fault fail-patch is set" in failure.get("message", "")
    assert "1 host failed: h2" in result.stderr
    after = lab.snapshot()
    versions = {h.name: (h.version, h.enabled) for h in after.hosts}
    assert versions == {
        "h1": (TARGET, True),
        "h2": ("8.2.1", False),
        "h3": (TARGET, True),
        "h4": (TARGET, True),
    }
    h2 = next(h for h in before.hosts if h.name == "h2")
    pinned_on_h2 = {vm.id for vm in before.resident(h2.id) if vm.blockers}
    # Only the VMs pinned to the failed host are down, on purpose, and the log says so.
    assert set(running(before)) - set(running(after)) == pinned_on_h2
    for vm in before.vms:
        if vm.id in pinned_on_h2:
            assert f"{vm.name} stays shut down" in result.stderr
    # The report of a failed run, for the change ticket: the outcome, the host's failure
    # with the end of the playbook's output.
    report = lab.rollup("report", "--format", "markdown")
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines()[2].startswith("**failed**: 1 host failed: h2")
    assert "| h2 | batch " in report.stdout and "| failed after " in report.stdout
    assert "### h2, patching: patch playbook failed" in report.stdout
    assert "lab fault fail-patch is set" in report.stdout
    page = lab.dir / "failed.html"
    assert lab.rollup("report", "-o", str(page)).returncode == 0
    dom, _ = render(page, lab.dir)
    assert '<p class="outcome failed" id="outcome">failed: 1 host failed: h2' in dom
    assert '<td class="failed">failed after ' in dom
    assert "lab fault fail-patch is set" in dom.split('id="failures"', 1)[1]


def test_on_failure_abort_stops_and_touches_no_other_host(lab: Lab):
    lab.set_faults({"hosts": {"h2": {"fail_patch": True}}})
    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui", "--on-failure", "abort")
    assert result.returncode == 1, result.stderr
    after = lab.snapshot()
    assert {h.name: h.version for h in after.hosts} == {
        "h1": TARGET,
        "h2": "8.2.1",
        "h3": "8.2.1",
        "h4": "8.2.1",
    }
    assert states(lab, "h3") == []


def test_unmovable_fail_refuses_the_run_naming_the_pinned_vm(lab: Lab):
    before = lab.snapshot()
    pinned = next(vm for vm in before.vms if vm.blockers and vm.running)
    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui", "--unmovable", "fail")
    assert result.returncode == 3, result.stderr
    assert pinned.name in result.stderr
    after = lab.snapshot()
    assert (after.hosts, after.vms, after.lock) == (before.hosts, before.vms, None)


def test_unmovable_skip_host_leaves_that_host_alone_and_says_why(lab: Lab):
    before = lab.snapshot()
    pinned_hosts = {before.host(vm.host).name for vm in before.vms if vm.blockers and vm.host}
    result = lab.rollup(
        "run", str(lab.inventory), "--yes", "--no-tui", "--unmovable", "skip-host", "--json"
    )
    assert result.returncode == 0, result.stderr
    after = lab.snapshot()
    for host in after.hosts:
        expected = "8.2.1" if host.name in pinned_hosts else TARGET
        assert (host.name, host.version, host.enabled) == (host.name, expected, True)
    assert running(after) == running(before)


def _rollout(lab: Lab, run_id: str, clock, resumed=None, plan=None) -> Rollout:
    config = inventory.select_pool(
        inventory.load(str(lab.write_inventory(rollup_window="01:00-02:00"))), None
    )
    session = open_session(config, lab.state)
    pool = session.driver.snapshot()
    journal = Journal(lab.state)
    if plan is None:
        plan = planner.plan(pool, config.policy)
        journal.create_run(run_id, config.name, pool.id, "inv", "test", {})
    ctx = RunContext(
        run_id=run_id,
        driver=session.driver,
        patcher=AnsiblePatcher(lab.state / "runs" / run_id),
        journal=journal,
        bus=EventBus(),
        policy=plan.policy,
        remotes=session.remotes(pool),
    )
    return Rollout(ctx, plan, RunOptions(yes=True, clock=clock), resumed=resumed)


def test_a_maintenance_window_that_closes_mid_run_pauses_and_resume_finishes(lab: Lab):
    before = lab.snapshot()
    inside, outside = datetime(2026, 11, 25, 1, 30), datetime(2026, 11, 25, 2, 30)
    calls = []

    def closing_clock() -> datetime:
        # The window is open at the start (before anything is downloaded) and for the
        # first two hosts, then it closes.
        calls.append(1)
        return inside if len(calls) <= 3 else outside

    first = _rollout(lab, "window-run", closing_clock)
    finished = asyncio.run(first.execute())
    first.ctx.driver.close()
    assert finished.outcome == "paused" and finished.exit_code == 5
    assert "maintenance window 01:00-02:00 is closed" in finished.message
    assert finished.hosts_done == 2
    during = lab.snapshot()
    assert all(h.enabled for h in during.hosts) and during.lock is None
    assert set(running(before)) <= set(running(during))

    journal = Journal(lab.state)
    second = _rollout(
        lab,
        "window-run",
        lambda: inside,
        resumed=journal.host_states("window-run"),
        plan=first.plan,
    )
    finished = asyncio.run(second.execute())
    second.ctx.driver.close()
    assert finished.outcome == "completed", finished.message
    assert_upgraded_and_whole(before, lab.snapshot())


def test_a_detach_during_the_last_batch_lets_it_finish_and_the_run_completes(lab: Lab):
    """Ctrl-C, q in the TUI, or a fleet stopping every pool, while the last host is being
    patched: its turn finishes (a batch always does) and nothing is left to resume."""
    before = lab.snapshot()
    rollout = _rollout(lab, "detach-run", lambda: datetime(2026, 11, 25, 1, 30))
    last = rollout.plan.steps[-1].host

    def detach_on_last(event: Event) -> None:
        if isinstance(event, HostStateChanged) and (event.host, event.state) == (last, "patching"):
            rollout.request("detach")

    rollout.ctx.bus.subscribe(detach_on_last)
    finished = asyncio.run(rollout.execute())
    rollout.ctx.driver.close()
    assert finished.outcome == "completed" and finished.exit_code == 0, finished.message
    assert Journal(lab.state).run("detach-run").state == "completed"
    assert_upgraded_and_whole(before, lab.snapshot())


def test_status_and_history_tell_what_happened(lab: Lab, tmp_path: Path):
    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
    assert result.returncode == 0
    status = lab.rollup("status")
    assert status.returncode == 0
    assert "completed" in status.stdout
    for host in ("h1", "h2", "h3", "h4"):
        assert host in status.stdout
    history = lab.rollup("history", "--json")
    assert '"outcome": "completed"' in history.stdout


def test_a_host_whose_vms_have_nowhere_to_go_now_is_left_in_service(lab: Lab):
    # A full pool that loses h2 (failed patch) cannot also empty h3 or h4: with
    # --on-failure continue they are refused before being disabled, not half-evacuated.
    before = lab.snapshot()
    lab.set_faults({"hosts": {"h2": {"fail_patch": True}}})
    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui", "--on-failure", "continue")
    assert result.returncode == 1, result.stderr
    after = lab.snapshot()
    for host in after.hosts:
        if host.name == "h2":
            assert not host.enabled and not after.resident(host.id)
        else:
            assert host.enabled, f"{host.name} was left out of service"
    h2 = next(h for h in before.hosts if h.name == "h2")
    pinned_on_h2 = {vm.id for vm in before.resident(h2.id) if vm.blockers}
    assert set(running(before)) - set(running(after)) == pinned_on_h2
    refused = [line for line in result.stderr.splitlines() if "not enough room" in line]
    assert all("stays in service" in line for line in refused)


def test_a_failed_step_is_retried_and_failures_within_the_budget_let_the_run_go_on(
    roomy_lab: Lab,
):
    lab = roomy_lab  # room enough to empty h4 with h3 failed, disabled and empty
    inventory = lab.write_inventory(
        rollup_retries=1, rollup_retry_delay="2s", rollup_max_failed_hosts=1
    )
    lab.set_faults({"hosts": {"h2": {"fail_patch": True}}})
    child = lab.start_rollup("run", str(inventory), "--yes", "--no-tui", "--json")
    assert child.stdout is not None
    first = read_events(
        child.stdout,
        lambda e: e["kind"] == "action" and e["host_name"] == "h2" and not e["ok"],
    )
    # Someone mends h2 while rollup waits to try again; h3 and h4 break for good.
    lab.set_faults({"hosts": {"h3": {"fail_patch": True}, "h4": {"fail_patch": True}}})
    out, err = child.communicate(timeout=240)
    assert child.returncode == 5, err
    events = [*first, *valid_events(out)]
    failed = [(e["host_name"], e["state"]) for e in events if e["kind"] == "action" and not e["ok"]]
    # Each failing step tried twice: h2 mended at its second try, h3 and h4 not.
    assert failed == [("h2", "patching"), ("h3", "patching"), ("h3", "patching"),
                      ("h4", "patching"), ("h4", "patching")]  # fmt: skip
    states = {e["host_name"]: e["state"] for e in events if e["kind"] == "host-state"}
    assert states == {"h1": "done", "h2": "done", "h3": "failed", "h4": "failed"}
    assert "h2: patching failed (" in err and "try 2 of 2 in 2s" in err
    assert "1 host failed so far, within rollup_max_failed_hosts 1: going on" in err
    assert "2 hosts failed, more than rollup_max_failed_hosts 1: the run stops here" in err
    plan = lab.rollup("plan", str(inventory), "--format", "markdown")
    assert (
        "- On failure: a failed step is tried 1 more time (after 2s, doubling); pause once"
        " more than 1 host failed" in plan.stdout
    )
