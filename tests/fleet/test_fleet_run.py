"""`rollup run --pools`: several lab pools of one inventory, as a pipeline runs them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from rollup.output.report import plan_schema
from tests.rollout.conftest import run_rollup
from tests.rollout.reports import valid_events


def lab_pool(seed: int, names: list[str], **extra: object) -> dict[str, object]:
    """An inventory group whose pool is an in-process lab of len(names) hosts."""
    return {
        "vars": {
            "rollup_driver": "xenapi",
            "rollup_lab": {"hosts": len(names), "vms": 9, "seed": seed, "speed": 200, "ssh": False},
            "rollup_reboot": "if-required",
            "rollup_unmovable": "shutdown-restart",
            "rollup_patch_seconds": 3,
            "rollup_reboot_seconds": 5,
            **extra,
        },
        "hosts": {name: {"rollup_host_name": f"h{i + 1}"} for i, name in enumerate(names)},
    }


# Racks interleaved in the inventory: the run must still take one rack at a time.
ZONES = {"h1": "a", "h2": "b", "h3": "a", "h4": "b", "h5": "a", "h6": "b"}


def fleet_inventory(directory: Path) -> Path:
    east = lab_pool(
        3,
        [f"e{i}" for i in range(1, 7)],
        rollup_max_parallel_hosts="auto",
        rollup_headroom="10%",
        rollup_strategy="upgraded-first",
    )
    for i, name in enumerate(east["hosts"]):  # type: ignore[arg-type]
        east["hosts"][name]["rollup_zone"] = ZONES[f"h{i + 1}"]  # type: ignore[index]
    east["vars"]["rollup_lab"]["fill"] = "35%"  # type: ignore[index]
    west = lab_pool(4, ["w1", "w2", "w3"])
    west["vars"]["rollup_lab"]["flavor"] = "xenserver"  # type: ignore[index]
    # Half full or more, and no host may be filled past 40 %: nowhere to evacuate to.
    north = lab_pool(5, ["n1", "n2", "n3"], rollup_headroom="60%")
    inventory = directory / "fleet.yml"
    inventory.write_text(
        yaml.safe_dump({"all": {"children": {"east": east, "west": west, "north": north}}})
    )
    return inventory


def test_a_fleet_runs_each_pool_as_its_own_run_and_exits_with_the_worst(tmp_path: Path):
    inventory = fleet_inventory(tmp_path)
    state = tmp_path / "state"
    # Planned first, as a change board sees it: one plan a line, north's refused.
    planned = run_rollup(state, "plan", str(inventory), "--pools", "north,east", "--format", "json")
    assert planned.returncode == 3, planned.stderr
    documents = [json.loads(line) for line in planned.stdout.splitlines()]
    validator = jsonschema.Draft202012Validator(plan_schema())
    for document in documents:
        validator.validate(document)
    # In inventory order whatever the order asked; each pool's lab is its own pool.
    assert [d["feasible"] for d in documents] == [True, False]
    assert documents[0]["pool"]["id"] != documents[1]["pool"]["id"]
    assert documents[0]["concurrency"]["reason"].startswith("auto: ")
    result = run_rollup(
        state,
        "run",
        str(inventory),
        "--pools",
        "all",
        "--max-parallel-pools",
        "2",
        "--yes",
        "--json",
        "--junit",
        str(tmp_path / "junit.xml"),
        timeout=300,
    )
    # north is refused; east and west complete: the worst of them is the exit code.
    assert result.returncode == 3, result.stderr
    summary = result.stderr[result.stderr.index("rollup: 3 pools: 2 completed, 1 not (exit 3)") :]
    lines = {line.split()[0]: line for line in summary.splitlines()[1:]}
    assert " exit 0  completed" in lines["east"] and " exit 0  completed" in lines["west"]
    assert "no run" in lines["north"] and "exit 3  refused: " in lines["north"]
    assert "not enough memory elsewhere to evacuate" in lines["north"]
    # The log says whose each line is.
    assert any(line[9:].startswith("[east] ") for line in result.stderr.splitlines())

    events = valid_events(result.stdout)
    # A pipeline learns of every pool, also the one that never ran.
    ends = {
        e["pool"]: (e["exit_code"], e["run_id"]) for e in events if e["kind"] == "pool-finished"
    }
    assert set(ends) == {"east", "west", "north"}
    assert ends["north"] == (3, "") and ends["east"][0] == ends["west"][0] == 0
    events = [e for e in events if e["kind"] != "pool-finished"]
    by_pool: dict[str, list[dict[str, object]]] = {}
    for event in events:
        by_pool.setdefault(str(event["pool"]), []).append(event)
    assert set(by_pool) == {"east", "west"}
    finished = {
        pool: [e for e in found if e["kind"] == "run-finished"] for pool, found in by_pool.items()
    }
    assert [e["outcome"] for e in finished["east"]] == ["completed"]
    assert [e["outcome"] for e in finished["west"]] == ["completed"]
    # Two at once: each pool started before the other finished.
    assert by_pool["west"][0]["at"] < finished["east"][0]["at"]
    assert by_pool["east"][0]["at"] < finished["west"][0]["at"]
    run_ids = {pool: found[0]["run_id"] for pool, found in by_pool.items()}
    assert run_ids["east"] != run_ids["west"]

    # east: hosts upgraded at the same time (auto), never two racks at once.
    span: dict[str, list[int]] = {}
    for i, event in enumerate(by_pool["east"]):
        if event["kind"] == "host-state" and event["state"] not in ("pending", "skipped"):
            span.setdefault(str(event["host_name"]), [i, i])[1] = i
    together = [
        (a, b)
        for a in span
        for b in span
        if a < b and span[a][0] < span[b][1] and span[b][0] < span[a][1]
    ]
    assert together, f"auto put no two hosts in one batch: {span}"
    assert all(ZONES[a] == ZONES[b] for a, b in together), together
    # One JUnit report per pool that ran, a case per host it upgraded.
    assert sorted(p.name for p in tmp_path.glob("junit*.xml")) == [
        "junit-east.xml",
        "junit-west.xml",
    ]
    assert "<testcase" in (tmp_path / "junit-east.xml").read_text()
    history = json.loads(run_rollup(state, "history", "--json").stdout)
    assert {run["pool"] for run in history} == {"east", "west"}
    for pool, run_id in run_ids.items():
        status = run_rollup(state, "status", str(run_id))
        assert status.returncode == 0 and "completed" in status.stdout, status.stdout
        report = run_rollup(state, "report", str(run_id), "--format", "markdown")
        assert f"pool {pool}" in report.stdout, report.stdout[:400]
