"""Commands that steer a run from any shell mean what they say, at once.

A run paused by a failure (its process gone) is visible to `rollup plan`, and `rollup
abort` finishes it right away: nothing more is done to the pool, and what stays out of
service is said with the command that brings it back.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import yaml

from rollup.drivers import Connection
from rollup.drivers.xenapi.driver import XenApiDriver
from rollup.lab import LabSpec
from rollup.lab.hosts import stop_stale_daemons
from rollup.lab.xapi.running import RunningLab
from tests.rollout.test_lab_resume import SPEED, lab_inventory, rollup, status


def run_lock(state: Path, inventory: Path) -> dict[str, str]:
    planned = rollup(state, "plan", str(inventory), "--format", "json")
    checks = {c["name"]: c for c in json.loads(planned.stdout)["checks"]}
    return checks["run-lock"]


def test_abort_of_a_paused_run_finishes_it_at_once_and_says_what_stays_out_of_service(
    tmp_path: Path,
) -> None:
    faults = tmp_path / "faults.yml"
    faults.write_text(yaml.safe_dump({"hosts": {"h3": {"fail_patch": True}}}))
    inventory = lab_inventory(tmp_path, faults)
    state = tmp_path / "state"
    try:
        run = rollup(state, "run", str(inventory), "--yes", "--no-tui")
        assert run.returncode == 5, run.stderr
        run_id = status(state)["run"]

        # The paused run holds the pool, though it holds no lock on it.
        lock = run_lock(state, inventory)
        assert lock["status"] == "fail", lock
        assert f"paused run {run_id}" in lock["reason"]
        assert f"`rollup abort {run_id}`" in lock["reason"]

        aborted = rollup(state, "abort", run_id)
        assert aborted.returncode == 0, aborted.stderr
        said = aborted.stderr
        assert f"run {run_id} aborted (paused before)" in said
        assert "h3 stays out of service (failed while patching" in said
        assert "enable it (xe host-enable)" in said
        assert "search-02 stays shut down: it can run only on h3" in said
        assert "xe vm-start vm=search-02 on=h3" in said
        shown = status(state)
        assert shown["state"] == "aborted", shown
        again = rollup(state, "resume", run_id, "--yes", "--no-tui")
        assert again.returncode == 2 and "is aborted: nothing to resume" in again.stderr

        # Nothing was done to the pool: h3 still disabled, search-02 still down.
        spec = LabSpec(hosts=4, vms=24, seed=1, speed=SPEED, ssh=False)
        lab = RunningLab.start_for(spec, state / "labs" / "lab", restore=True)
        try:
            driver = XenApiDriver(Connection(lab.url, lab.user, lab.password))
            try:
                pool = driver.snapshot()
            finally:
                driver.close()
            hosts = {h.name: h.enabled for h in pool.hosts}
            assert hosts == {"h1": True, "h2": True, "h3": False, "h4": True}
            search = next(vm for vm in pool.vms if vm.name == "search-02")
            assert not search.running
        finally:
            lab.stop()
        # Over: a new plan is free to run (on a fresh lab, as after any finished run).
        assert run_lock(state, inventory)["status"] == "pass"
    finally:
        stop_stale_daemons(state / "labs" / "lab")


def test_skip_from_another_shell_leaves_a_host_out_and_the_resume_does_the_rest(
    tmp_path: Path,
) -> None:
    faults = tmp_path / "faults.yml"
    faults.write_text(yaml.safe_dump({"hosts": {"h2": {"fail_patch": True}}}))
    inventory = lab_inventory(tmp_path, faults)
    state = tmp_path / "state"
    try:
        run = rollup(state, "run", str(inventory), "--yes", "--no-tui")
        assert run.returncode == 5, run.stderr
        run_id = status(state)["run"]
        assert f"`rollup skip {run_id} h2` to leave it out" in run.stderr

        # What the TUI's keys refuse, the commands refuse: one line, exit 2.
        unknown = rollup(state, "skip", run_id, "h9")
        assert unknown.returncode == 2
        assert unknown.stderr.strip().endswith("has no host h9: use one of h1, h2, h3, h4")
        done = rollup(state, "retry", run_id, "h1")
        assert done.returncode == 2 and "h1 is done in run" in done.stderr

        # h3 waits its turn: left out. h2's cause fixed, the resume tries it again.
        skipped = rollup(state, "skip", run_id, "h3")
        assert skipped.returncode == 0, skipped.stderr
        assert f"`rollup resume {run_id}` carries it out" in skipped.stderr
        faults.write_text("{}\n")
        resumed = rollup(state, "resume", run_id, "--yes", "--no-tui")
        assert resumed.returncode == 0, resumed.stderr
        finished = status(state)
        assert finished["state"] == "completed", finished
        assert {h["name"]: h["state"] for h in finished["hosts"]} == {
            "h1": "done",
            "h2": "done",
            "h3": "skipped",
            "h4": "skipped",
        }
        assert "h3       skipped (skipped by the operator)" in resumed.stderr
    finally:
        stop_stale_daemons(state / "labs" / "lab")


def test_a_run_started_outside_its_window_downloads_nothing_and_pauses(tmp_path: Path) -> None:
    faults = tmp_path / "faults.yml"
    faults.write_text("{}\n")
    inventory = lab_inventory(tmp_path, faults)
    data = yaml.safe_load(inventory.read_text())
    # A one-minute window twelve hours from now: closed whenever the test runs.
    opens = (datetime.datetime.now() + datetime.timedelta(hours=12)).strftime("%H:%M")
    closes = (datetime.datetime.now() + datetime.timedelta(hours=12, minutes=1)).strftime("%H:%M")
    data["all"]["children"]["lab"]["vars"]["rollup_window"] = f"{opens}-{closes}"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    state = tmp_path / "state"
    try:
        run = rollup(state, "run", str(inventory), "--yes", "--no-tui")
        assert run.returncode == 5, run.stderr
        assert f"maintenance window {opens}-{closes} is closed" in run.stderr
        assert "pre-staging" not in run.stderr and "pre-staged" not in run.stderr
        hosts = {h["name"]: h["state"] for h in status(state)["hosts"]}
        assert set(hosts.values()) <= {"pending", "skipped"}, hosts
    finally:
        stop_stale_daemons(state / "labs" / "lab")
