"""Commands that steer a run from any shell mean what they say, at once.

A run paused by a failure (its process gone) is visible to `rollup plan`, and `rollup
abort` finishes it right away: nothing more is done to the pool, and what stays out of
service is said with the command that brings it back.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from rollup.lab.hosts import stop_stale_daemons
from tests.rollout.test_lab_resume import lab_inventory, restored_pool, rollup, status


@contextlib.contextmanager
def lab_run(tmp_path: Path, faults: dict[str, Any]) -> Iterator[tuple[Path, Path, Path]]:
    """The in-process lab's inventory with these faults: (inventory, state dir, fault file);
    whatever its rollup processes leave running is stopped afterwards."""
    fault_file = tmp_path / "faults.yml"
    fault_file.write_text(yaml.safe_dump(faults))
    state = tmp_path / "state"
    try:
        yield lab_inventory(tmp_path, fault_file), state, fault_file
    finally:
        stop_stale_daemons(state / "labs" / "lab")


def run_lock(state: Path, inventory: Path) -> dict[str, str]:
    planned = rollup(state, "plan", str(inventory), "--format", "json")
    checks = {c["name"]: c for c in json.loads(planned.stdout)["checks"]}
    return checks["run-lock"]


def test_abort_of_a_paused_run_finishes_it_at_once_and_says_what_stays_out_of_service(
    tmp_path: Path,
) -> None:
    with lab_run(tmp_path, {"hosts": {"h3": {"fail_patch": True}}}) as (inventory, state, _):
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
        pool, _ = restored_pool(state)
        hosts = {h.name: h.enabled for h in pool.hosts}
        assert hosts == {"h1": True, "h2": True, "h3": False, "h4": True}
        assert not next(vm for vm in pool.vms if vm.name == "search-02").running
        # Over: a new plan is free to run (on a fresh lab, as after any finished run).
        assert run_lock(state, inventory)["status"] == "pass"


def test_skip_from_another_shell_leaves_a_host_out_and_the_resume_does_the_rest(
    tmp_path: Path,
) -> None:
    with lab_run(tmp_path, {"hosts": {"h2": {"fail_patch": True}}}) as (inventory, state, faults):
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


def test_a_run_started_outside_its_window_downloads_nothing_and_pauses(tmp_path: Path) -> None:
    # A one-minute window twelve hours from now: closed whenever the test runs.
    opens = (datetime.datetime.now() + datetime.timedelta(hours=12)).strftime("%H:%M")
    closes = (datetime.datetime.now() + datetime.timedelta(hours=12, minutes=1)).strftime("%H:%M")
    with lab_run(tmp_path, {}) as (inventory, state, _):
        data = yaml.safe_load(inventory.read_text())
        data["all"]["children"]["lab"]["vars"]["rollup_window"] = f"{opens}-{closes}"
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        run = rollup(state, "run", str(inventory), "--yes", "--no-tui")
        assert run.returncode == 5, run.stderr
        assert f"maintenance window {opens}-{closes} is closed" in run.stderr
        assert "pre-staging" not in run.stderr and "pre-staged" not in run.stderr
        hosts = {h["name"]: h["state"] for h in status(state)["hosts"]}
        assert set(hosts.values()) <= {"pending", "skipped"}, hosts
