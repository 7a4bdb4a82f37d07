"""`rollup plan` against a running lab: honest, complete, and it changes nothing."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import jsonschema

from rollup.output.report import plan_schema
from tests.rollout.conftest import Lab


def test_a_plan_of_the_inventory_written_by_the_lab_is_feasible_and_changes_nothing(lab: Lab):
    before = lab.snapshot()
    result = lab.rollup("plan", str(lab.inventory), "--format", "json")
    assert result.returncode == 0, result.stderr
    after = lab.snapshot()
    assert after == before, "planning must not change the pool"

    plan = json.loads(result.stdout)
    jsonschema.Draft202012Validator(plan_schema()).validate(plan)
    assert plan["feasible"] is True
    assert plan["batches"][0]["steps"][0]["host"]["name"] == "h1", "the master goes first"


def test_a_script_can_check_from_the_json_alone_that_no_host_is_ever_over_committed(lab: Lab):
    plan = json.loads(lab.rollup("plan", str(lab.inventory), "--format", "json").stdout)
    # Replay the moves with nothing but the JSON: where every running VM is, and how
    # much each host holds, after every evacuation and every return.
    capacity = {row["host"]["id"]: row["capacity"] for row in plan["batches"][0]["memory"]}
    used = {row["host"]["id"]: row["before"] for row in plan["batches"][0]["memory"]}
    where: dict[str, str] = {}
    for batch in plan["batches"]:
        for phase in ("evacuate", "restore"):
            arriving: dict[str, int] = defaultdict(int)
            for step in batch["steps"]:
                for move in step[phase]:
                    arriving[move["dest"]["id"]] += move["memory"]
            for host, incoming in arriving.items():
                # During a migration the VM holds memory on both ends.
                assert used[host] + incoming <= capacity[host], (batch["index"], host)
            for step in batch["steps"]:
                for move in step[phase]:
                    used[move["source"]["id"]] -= move["memory"]
                    used[move["dest"]["id"]] += move["memory"]
                    where[move["vm"]["id"]] = move["dest"]["id"]
        for row in batch["memory"]:
            assert used[row["host"]["id"]] == row["after"] <= row["capacity"]
    assert len(where) > 10, "the lab's plan moves VMs: the replay must have seen them"
    final = {entry["vm"]["id"]: entry["host"]["id"] for entry in plan["final_layout"]}
    for vm, host in where.items():
        assert final[vm] == host


def test_a_plan_whose_checks_fail_exits_3_and_says_what_to_do(lab: Lab):
    result = lab.rollup("plan", str(lab.inventory), "--unmovable", "fail", "--format", "markdown")
    assert result.returncode == 3
    assert "**FAIL**" in result.stdout
    assert "unmovable-vm" in result.stdout
    assert "rollup_unmovable" in result.stdout or "shutdown-restart" in result.stdout


def test_a_broken_inventory_is_one_line_and_exit_2(lab: Lab, tmp_path: Path):
    broken = tmp_path / "broken.yml"
    broken.write_text("all:\n  children:\n    p:\n      vars: {rollup_driver: xenapi,\n")
    result = lab.rollup("plan", str(broken))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(broken) in lines[0]
    assert "Traceback" not in result.stderr


def test_a_wrong_password_is_one_line_exit_2_and_never_shows_the_password(lab: Lab):
    inventory = lab.write_inventory(rollup_api_password="not-the-password")
    result = lab.rollup("plan", str(inventory))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "credentials" in result.stderr
    assert "not-the-password" not in result.stderr
