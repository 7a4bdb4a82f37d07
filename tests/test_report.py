"""The plan's renderings: JSON that validates and lets a script verify the plan, markdown
for a change ticket, and the terminal table."""

from __future__ import annotations

import io

import jsonschema
from hypothesis import HealthCheck, given, settings
from rich.console import Console
from strategies import host_id, make_pool, pools_and_policies

from rollup.model import Lock, Policy
from rollup.output.report import (
    SCHEMA_VERSION,
    format_duration,
    format_gib,
    plan_json,
    plan_markdown,
    plan_schema,
    plan_table,
    print_plan,
)
from rollup.plan.planner import plan

VALIDATOR = jsonschema.Draft202012Validator(plan_schema())
LOCK = Lock(run_id="r-42", controller="ops-1", pid=4242, started=1_000.0, expires=2_000.0)


def test_the_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(plan_schema())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pools_and_policies())
def test_plan_json_validates_against_the_schema_for_any_pool(case):
    pool, policy = case
    VALIDATOR.validate(plan_json(plan(pool, policy)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pools_and_policies())
def test_a_script_can_verify_from_the_json_alone_that_no_host_is_over_committed(case):
    pool, policy = case
    document = plan_json(plan(pool, policy))
    for batch in document["batches"]:
        receiving = {m["dest"]["id"] for s in batch["steps"] for m in s["evacuate"] + s["restore"]}
        for row in batch["memory"]:
            if row["host"]["id"] in receiving:
                assert row["peak"] <= row["capacity"]
            assert row["peak"] >= max(row["before"], row["after"])
    running = {vm.id for vm in pool.vms if vm.running}
    assert {row["vm"]["id"] for row in document["final_layout"]} == running


def test_plan_json_names_hosts_and_vms_by_id_and_name():
    pool = make_pool({"m": [2], "a": [2]})
    document = plan_json(plan(pool, Policy(target_version="8.3.0")))
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["feasible"] is True
    step = document["batches"][0]["steps"][0]
    assert step["host"] == {"id": host_id("m"), "name": "m"}
    assert step["version_after"] == "8.3.0"
    assert step["evacuate"][0]["vm"] == {"id": "uuid-m-vm0", "name": "m-vm0"}
    assert step["restore"][0]["dest"] == {"id": host_id("m"), "name": "m"}
    assert document["totals"]["migrations"] == 4
    assert document["totals"]["migrations_back"] == 2


def test_markdown_carries_every_check_with_its_reason_and_each_batch():
    pool = make_pool({"m": [2], "a": [10, 6], "b": [2]}, capacity=12, lock=LOCK)
    result = plan(pool, Policy(), now=1_500.0)
    text = plan_markdown(result)
    for check in result.checks:
        assert check.reason in text
    assert "**FAIL**" in text
    assert "REFUSED" in text
    assert "### Batch 1" in text
    # A pool that cannot say what is pending: "?" updates, patched as the playbook says.
    assert "| m | 8.2.1 → patched | ? | 1 VM, 2.0 GiB | 1 VM, 2.0 GiB |" in text


def test_the_table_shows_failed_checks_in_red_first():
    pool = make_pool({"m": [2], "a": [2]}, ha=True)
    console = Console(record=True, width=200, color_system="truecolor")
    print_plan(plan(pool, Policy(ha="refuse")), console)
    text = console.export_text(clear=False)
    assert text.index("FAIL") < text.index("PASS")
    assert "HA is on and the policy refuses" in text
    assert "\x1b[1;31m" in console.export_text(styles=True)


def test_plan_table_is_a_renderable():
    console = Console(record=True, width=120)
    console.print(plan_table(plan(make_pool({"m": [1], "a": [1]}), Policy())))
    assert "Batches" in console.export_text()


def test_human_units_are_gib_with_one_decimal_and_short_durations():
    assert format_gib(3 * 1024**3 // 2) == "1.5 GiB"
    assert format_duration(750) == "12m 30s"
    assert format_duration(45) == "45s"
    assert format_duration(3725) == "1h 02m 05s"


def test_print_plan_writes_to_a_file_when_no_console_is_given():
    buffer = io.StringIO()
    print_plan(plan(make_pool({"m": [1], "a": [1]}), Policy()), file=buffer)
    assert "Checks" in buffer.getvalue()
