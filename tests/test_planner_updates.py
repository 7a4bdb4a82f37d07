"""Planning a patch from what each host reports pending: who is skipped, who is patched in
place, what every plan format says of it."""

from __future__ import annotations

import dataclasses

import jsonschema
from rich.console import Console

from rollup.model import Pending, Policy, Pool, Update
from rollup.output.report import plan_json, plan_markdown, plan_schema, print_plan
from rollup.plan.planner import plan
from tests.strategies import make_pool

KERNEL = Update("kernel", "4.19.19", "2.xcpng8.3", "dom0 kernel: security fixes", size=31)
CURL = Update("curl", "8.4.0", "3.xcpng8.3", "curl: security fixes", "High")
LIVEPATCH = Update("XSU-84-0004", summary="kernel", severity="High", livepatch=True)


def with_pending(pool: Pool, pending: dict[str, Pending | None]) -> Pool:
    hosts = tuple(
        dataclasses.replace(h, pending=pending[h.name]) if h.name in pending else h
        for h in pool.hosts
    )
    return dataclasses.replace(pool, hosts=hosts)


def reboot(*updates: Update) -> Pending:
    return Pending(updates=updates, guidance=("reboot_host",))


def test_a_host_with_nothing_pending_is_skipped_whatever_its_version():
    pool = with_pending(
        make_pool({"m": [2], "a": [2], "b": [2]}, versions="8.3.0"),
        {"m": reboot(KERNEL, CURL), "a": Pending(), "b": reboot(CURL)},
    )
    result = plan(pool, Policy(update="xapi"))
    assert [s.host_name for s in result.steps] == ["m", "b"]
    assert [(s.host_name, s.reason) for s in result.skipped] == [("a", "nothing pending")]
    assert [s.pending.updates for s in result.steps if s.pending] == [(KERNEL, CURL), (CURL,)]
    checks = {c.name: c for c in result.checks}
    assert checks["updates"].reason == "2 hosts with updates pending, 1 with nothing pending"
    # The master may stay out of a patch: versions do not change.
    assert "master-first" not in checks and result.feasible


def test_a_target_version_still_upgrades_hosts_below_it_and_patches_those_at_it():
    pool = with_pending(
        make_pool(
            {"m": [2], "a": [2], "b": [2]}, versions={"m": "8.2.1", "a": "8.3.0", "b": "8.3.0"}
        ),
        {"m": Pending(), "a": reboot(CURL), "b": Pending()},
    )
    result = plan(pool, Policy(target_version="8.3.0"))
    assert [(s.host_name, s.upgrade) for s in result.steps] == [("m", True), ("a", False)]
    assert [(s.host_name, s.reason) for s in result.skipped] == [
        ("b", "nothing pending; 8.3.0 is already at target 8.3.0")
    ]
    reason = {c.name: c.reason for c in result.checks}["target-version"]
    assert reason == "1 host to upgrade to 8.3.0, 1 to patch, 1 already there"


def test_updates_that_need_no_reboot_are_installed_in_place_when_the_policy_allows():
    live = Pending(updates=(LIVEPATCH,), recommended=("reboot_host_on_livepatch_failure",))
    pool = with_pending(make_pool({"m": [4, 2], "a": [2]}), {"m": live, "a": reboot(KERNEL)})
    result = plan(pool, Policy(update="xapi", reboot="if-required"))
    steps = {s.host_name: s for s in result.steps}
    assert steps["m"].in_place and steps["m"].evacuate == () and steps["m"].restore == ()
    assert not steps["a"].in_place and len(steps["a"].evacuate) == 1
    # Its own VMs never move, in its turn or another's.
    assert not [m for s in result.steps for m in s.evacuate if m.vm_name.startswith("m-")]
    assert steps["m"].estimate_seconds == Policy().patch_seconds
    # rollup_reboot: always evacuates and reboots every host, livepatch or not.
    always = plan(pool, Policy(update="xapi", reboot="always"))
    assert not any(s.in_place for s in always.steps)


def test_every_plan_format_says_what_each_host_installs_and_what_follows():
    live = Pending(updates=(LIVEPATCH,), recommended=("reboot_host_on_livepatch_failure",))
    pool = with_pending(
        make_pool({"m": [2], "a": [2], "b": [2]}, versions="8.3.0"),
        {"m": reboot(KERNEL, CURL), "a": live, "b": Pending()},
    )
    pool = dataclasses.replace(pool, flavor="xenserver", updates_hash="abc123")
    result = plan(pool, Policy(update="xapi", reboot="if-required"))
    document = plan_json(result)
    jsonschema.validate(document, plan_schema())
    steps = {s["host"]["name"]: s for b in document["batches"] for s in b["steps"]}
    assert steps["m"]["pending_updates"][0] == {
        "name": "kernel",
        "version": "4.19.19",
        "release": "2.xcpng8.3",
        "summary": "dom0 kernel: security fixes",
        "severity": "",
        "size": 31,
        "livepatch": False,
    }
    assert (steps["m"]["guidance"], steps["m"]["reboot"], steps["m"]["in_place"]) == (
        ["reboot_host"],
        True,
        False,
    )
    assert (steps["a"]["reboot"], steps["a"]["in_place"]) == (False, True)
    hosts = {h["name"]: h for h in document["pool"]["hosts"]}
    assert hosts["b"]["pending_updates"] == []
    assert (document["pool"]["flavor"], document["pool"]["updates_hash"]) == ("xenserver", "abc123")
    assert document["policy"]["update"] == "xapi"

    text = plan_markdown(result)
    assert "## Updates" in text and "hash `abc123`" in text
    assert "### m: reboot" in text
    assert "| kernel | 4.19.19-2.xcpng8.3 | - | dom0 kernel: security fixes |" in text
    assert "| curl | 8.4.0-3.xcpng8.3 | High | curl: security fixes |" in text
    assert "### a: in place, VMs stay" in text and "(livepatch)" in text
    assert "| m | 8.3.0 → patched | 2 updates, reboot |" in text
    assert "| a | 8.3.0 → patched | 1 update, no reboot |" in text

    console = Console(record=True, width=160)
    print_plan(result, console)
    shown = console.export_text()
    assert "kernel-4.19.19-2.xcpng8.3, curl-8.4.0-3.xcpng8.3" in shown
    assert "in place, VMs stay" in shown and "2 updates, reboot" in shown
