"""`rollup plan` against a running lab: honest, complete, and it changes nothing."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import jsonschema
import yaml

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


def test_the_plan_names_the_pool_as_pool_and_the_run_do(lab: Lab):
    """The inventory's group (what --pool takes, what the run's log, status and history
    say), with the hypervisor's own name for the pool beside it when that differs."""
    group = next(iter(yaml.safe_load(lab.inventory.read_text())["all"]["children"]))
    api_name = lab.snapshot().name
    assert group != api_name, "the lab's group (lab_1) and pool (lab-1) differ"
    shown = lab.rollup("plan", str(lab.inventory), "--pool", group, "--format", "markdown")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"# Rolling upgrade plan: pool {group} ({api_name})\n")
    document = json.loads(lab.rollup("plan", str(lab.inventory), "--format", "json").stdout)
    assert (document["pool"]["inventory_name"], document["pool"]["name"]) == (group, api_name)


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


def test_zones_and_auto_concurrency_reach_the_plan_from_the_inventory(roomy_lab: Lab):
    lab = roomy_lab
    data = yaml.safe_load(lab.inventory.read_text())
    group = next(iter(data["all"]["children"].values()))
    names = list(group["hosts"])
    racks = {name: f"rack-{'ab'[i % 2]}" for i, name in enumerate(names)}
    for name, rack in racks.items():
        group["hosts"][name]["rollup_zone"] = rack
    zoned = lab.dir / "zoned.yml"
    zoned.write_text(yaml.safe_dump(data))

    args = (str(zoned), "--max-parallel-hosts", "auto", "--headroom", "10%")
    result = lab.rollup("plan", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    jsonschema.Draft202012Validator(plan_schema()).validate(plan)
    assert plan["policy"]["max_parallel_hosts"] == "auto"
    assert plan["policy"]["headroom"] == 0.1
    for batch in plan["batches"]:
        zones = {step["zone"] for step in batch["steps"]}
        assert len(zones) == 1, f"batch {batch['index']} spans zones {zones}"
        assert zones == {racks[step["host"]["name"]] for step in batch["steps"]}
        for row in batch["memory"]:  # no evacuation fills a host past 90 %
            assert row["peak"] <= max(row["before"], row["after"], 0.9 * row["capacity"])
    largest = max(len(b["steps"]) for b in plan["batches"])
    assert plan["concurrency"]["hosts"] == largest > 1
    assert plan["concurrency"]["reason"].startswith(f"auto: up to {largest} hosts at once")
    assert "no batch spans two zones" in plan["concurrency"]["reason"]

    markdown = lab.rollup("plan", *args, "--format", "markdown").stdout
    assert "- Concurrency: auto: up to " in markdown
    assert ", zone rack-a (" in markdown and ", zone rack-b (" in markdown
