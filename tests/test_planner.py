"""The planner's promises, one named case each."""

from __future__ import annotations

import dataclasses
import random

import pytest
from strategies import host_id, make_pool, vm_id
from test_planner_properties import replay

from rollup.model import Check, GiB, Lock, Plan, Policy
from rollup.plan.planner import plan


def checks_named(result: Plan, name: str) -> list[Check]:
    return [c for c in result.checks if c.name == name]


def only(result: Plan, name: str) -> Check:
    (check,) = checks_named(result, name)
    return check


def order(result: Plan) -> list[str]:
    return [step.host_name for step in result.steps]


# Order


def test_master_goes_first_even_when_the_inventory_names_it_last():
    pool = make_pool({"a": [1], "b": [1], "m": [1]}, master="m")
    result = plan(pool, Policy(host_order=("b", "a", "m")))
    assert order(result) == ["m", "b", "a"]


def test_inventory_order_puts_unnamed_hosts_after_the_named_ones_by_name():
    pool = make_pool({"m": [], "z": [], "c": [], "b": [], "a": []})
    result = plan(pool, Policy(host_order=("z", "b")))
    assert order(result) == ["m", "z", "b", "a", "c"]


def test_least_loaded_order_takes_the_emptiest_hosts_first_after_the_master():
    pool = make_pool({"m": [30], "a": [8, 8], "b": [2], "c": [4]})
    result = plan(pool, Policy(order="least-loaded"))
    assert order(result) == ["m", "b", "c", "a"]


# Target version


def test_hosts_already_at_the_target_are_skipped_with_the_reason():
    pool = make_pool(
        {"m": [], "a": [], "b": [], "c": []},
        versions={"m": "8.2.1", "a": "8.3.0", "b": "8.2.1", "c": "8.3.1"},
    )
    result = plan(pool, Policy(target_version="8.3.0"))
    assert order(result) == ["m", "b"]
    reasons = {s.host_name: s.reason for s in result.skipped}
    assert reasons == {
        "a": "8.3.0 is already at target 8.3.0",
        "c": "8.3.1 is newer than target 8.3.0",
    }
    assert only(result, "mixed-versions").status == "warn"


def test_rolling_upgrade_mode_left_on_with_matching_versions_is_a_warning():
    pool = dataclasses.replace(make_pool({"m": [], "a": []}), rolling_upgrade=True)
    check = only(plan(pool, Policy()), "mixed-versions")
    assert check.status == "warn"
    assert "rolling upgrade mode is still on" in check.reason


def test_without_a_target_version_every_host_is_upgraded():
    pool = make_pool(
        {"m": [], "a": [], "b": []}, versions={"m": "8.3.0", "a": "8.2.1", "b": "8.3.0"}
    )
    result = plan(pool, Policy())
    assert order(result) == ["m", "a", "b"]
    assert only(result, "target-version").status == "warn"


# Checks before the run


def test_dead_and_disabled_hosts_fail_their_checks_by_name():
    pool = make_pool({"m": [], "a": [], "b": []}, dead=["a"], disabled=["b"])
    result = plan(pool, Policy())
    assert only(result, "hosts-live").status == "fail"
    assert only(result, "hosts-live").host == host_id("a")
    assert "host a is not live" in only(result, "hosts-live").reason
    assert only(result, "hosts-enabled").host == host_id("b")
    assert not result.feasible


def test_ha_on_is_a_warning_when_rollup_may_disable_it_and_a_failure_when_refused():
    pool = make_pool({"m": [], "a": []}, ha=True)
    assert only(plan(pool, Policy()), "ha").status == "warn"
    refused = only(plan(pool, Policy(ha="refuse")), "ha")
    assert refused.status == "fail"
    assert "disable HA" in refused.reason


LOCK = Lock(run_id="r-42", controller="ops-1", pid=4242, started=1_000.0, expires=2_000.0)


def test_a_live_run_lock_fails_naming_run_controller_pid_and_since_when():
    pool = make_pool({"m": [], "a": []}, lock=LOCK)
    check = only(plan(pool, Policy(), now=1_500.0), "run-lock")
    assert check.status == "fail"
    for evidence in ("r-42", "ops-1", "4242", "1970-01-01 00:16:40 UTC"):
        assert evidence in check.reason


def test_an_expired_run_lock_is_a_warning_to_break_it():
    pool = make_pool({"m": [], "a": []}, lock=LOCK)
    check = only(plan(pool, Policy(), now=2_500.0), "run-lock")
    assert check.status == "warn"
    assert "stale" in check.reason
    assert "--break-lock" in check.reason


def test_a_run_lock_without_a_clock_fails_closed():
    pool = make_pool({"m": [], "a": []}, lock=LOCK)
    assert only(plan(pool, Policy()), "run-lock").status == "fail"


def test_a_clean_pool_passes_every_check():
    pool = make_pool({"m": [4], "a": [4], "b": [4]})
    result = plan(pool, Policy(target_version="8.3.0"))
    assert {c.status for c in result.checks} == {"pass"}
    assert result.feasible


# Unmovable VMs


PINNED = {"m": [2], "a": [4, 2], "b": [2]}


def test_a_pinned_vm_with_policy_fail_fails_with_its_reason():
    pool = make_pool(PINNED, pinned={"a-vm0": "local-sr"})
    result = plan(pool, Policy(unmovable="fail"))
    check = only(result, "unmovable-vm")
    assert check.status == "fail"
    assert check.vm == vm_id("a-vm0")
    assert check.host == host_id("a")
    assert "host-local SR" in check.reason
    assert "VM_REQUIRES_SR" in check.reason
    assert not result.feasible


def test_a_pinned_vm_with_policy_skip_host_skips_its_host_naming_the_vm():
    pool = make_pool(PINNED, pinned={"a-vm0": "pci"})
    result = plan(pool, Policy(unmovable="skip-host"))
    assert order(result) == ["m", "b"]
    (skipped,) = result.skipped
    assert skipped.host_name == "a"
    assert "a-vm0" in skipped.reason
    assert "PCI" in skipped.reason
    check = only(result, "unmovable-vm")
    assert check.status == "warn"
    assert "skipped" in check.reason
    assert result.feasible


def test_a_pinned_vm_with_policy_shutdown_restart_is_stopped_and_started_on_its_host():
    pool = make_pool(PINNED, pinned={"a-vm0": "vgpu"})
    result = plan(pool, Policy(unmovable="shutdown-restart"))
    step = next(s for s in result.steps if s.host_name == "a")
    assert step.stop == (vm_id("a-vm0"),)
    assert step.start == (vm_id("a-vm0"),)
    assert vm_id("a-vm0") not in {m.vm for m in step.evacuate}
    check = only(result, "unmovable-vm")
    assert check.status == "warn"
    assert "downtime" in check.reason
    assert dict(result.final_layout)[vm_id("a-vm0")] == host_id("a")
    replay(result)


def test_a_skipped_master_refuses_a_version_upgrade():
    pool = make_pool(PINNED, pinned={"m-vm0": "sriov"})
    result = plan(pool, Policy(unmovable="skip-host", target_version="8.3.0"))
    assert only(result, "master-first").status == "fail"


def test_halted_vms_are_not_moved_even_when_pinned():
    pool = make_pool({"m": [2], "a": [2]}, halted=[8])
    result = plan(pool, Policy())
    moved = {m.vm for s in result.steps for m in (*s.evacuate, *s.restore)}
    assert vm_id("halted0") not in moved
    assert vm_id("halted0") not in dict(result.final_layout)


# Capacity and placement


def test_a_pool_without_room_names_the_host_and_the_shortfall_in_bytes():
    pool = make_pool({"m": [8], "a": [10, 6], "b": [8]}, capacity=16)
    result = plan(pool, Policy())
    failing = [c for c in checks_named(result, "capacity") if c.status == "fail"]
    assert [c.host for c in failing] == [host_id("a")]
    assert f"short by {10 * GiB} bytes (10.0 GiB)" in failing[0].reason
    assert "evacuate a" in failing[0].reason
    assert not result.feasible
    replay(result)


def test_with_return_every_vm_goes_home_right_after_its_host():
    pool = make_pool({"m": [4, 4], "a": [8], "b": [2]}, capacity=16)
    result = plan(pool, Policy(strategy="return"))
    for step in result.steps:
        assert sorted(m.vm for m in step.restore) == sorted(m.vm for m in step.evacuate)
        assert all(m.dest == step.host for m in step.restore)
    assert dict(result.final_layout) == {vm.id: vm.host for vm in pool.vms}
    assert result.migrations == 2 * 4
    replay(result)


def test_upgraded_first_moves_each_vm_once_when_upgraded_hosts_have_room():
    pool = make_pool({"m": [4], "a": [4], "b": [4], "c": [4]}, capacity=16)
    first = plan(pool, Policy(strategy="upgraded-first"))
    back = plan(pool, Policy(strategy="return"))
    assert first.migrations < back.migrations
    # Only the master's VM has nowhere upgraded to go: it parks and comes back once.
    assert first.migrations == 2 + 3
    later = [m for s in first.steps[1:] for m in s.evacuate]
    assert all(m.dest == host_id("m") or m.dest in {s.host for s in first.steps} for m in later)
    replay(first)


def test_upgraded_first_prefers_a_host_already_at_the_target():
    pool = make_pool(
        {"m": [4], "a": [4], "new": []}, versions={"m": "8.2.1", "a": "8.2.1", "new": "8.3.0"}
    )
    result = plan(pool, Policy(strategy="upgraded-first", target_version="8.3.0"))
    assert {m.dest for s in result.steps for m in s.evacuate} <= {host_id("new"), host_id("m")}
    assert result.migrations == 2
    replay(result)


def test_vms_never_move_from_a_newer_host_to_an_older_one():
    # a runs 8.3.0 already; without a target it is upgraded too, and its VM may only go
    # to the upgraded master, never to b which still runs 8.2.1.
    pool = make_pool(
        {"m": [2], "a": [4], "b": []},
        versions={"m": "8.2.1", "a": "8.3.0", "b": "8.2.1"},
    )
    result = plan(pool, Policy(host_order=("m", "a", "b")))
    step_a = result.steps[1]
    assert [m.dest for m in step_a.evacuate] == [host_id("m")]
    replay(result)


def test_hosts_in_one_batch_are_evacuated_onto_hosts_outside_it():
    pool = make_pool({"m": [2], "a": [4], "b": [4], "c": [], "d": []}, capacity=8)
    result = plan(pool, Policy(max_parallel_hosts=2))
    assert [len(b.steps) for b in result.batches] == [1, 2, 2]
    for batch in result.batches:
        inside = {s.host for s in batch.steps}
        assert all(m.dest not in inside for s in batch.steps for m in s.evacuate)
    replay(result)


def test_a_batch_stops_growing_when_its_vms_would_not_fit_outside_it():
    pool = make_pool(
        {"m": [], "a": [6], "b": [6], "c": [3]}, capacity={"m": 10, "a": 8, "b": 8, "c": 8}
    )
    result = plan(pool, Policy(max_parallel_hosts=3))
    assert [[s.host_name for s in b.steps] for b in result.batches] == [["m"], ["a"], ["b", "c"]]
    assert result.feasible
    replay(result)


def test_canary_hosts_get_batches_of_their_own():
    pool = make_pool({"m": [], "a": [], "b": [], "c": [], "d": []})
    result = plan(pool, Policy(max_parallel_hosts=3, canary=1))
    assert [len(b.steps) for b in result.batches] == [1, 1, 3]


def test_memory_peak_counts_incoming_vms_before_the_batch_frees_anything():
    pool = make_pool({"m": [4], "a": [4], "b": []}, capacity=8)
    result = plan(pool, Policy())
    first = result.batches[0]
    receiver = first.steps[0].evacuate[0].dest
    assert dict(first.memory_peak)[receiver] == 8 * GiB
    assert dict(first.memory_after)[host_id("m")] == 4 * GiB


# Estimate


def test_estimate_adds_migrations_patch_and_reboot_per_host_and_sums_batches():
    pool = make_pool({"m": [4, 4], "a": []}, capacity=16)
    policy = Policy(
        migration_bandwidth=GiB, parallel_migrations=1, patch_seconds=100, reboot_seconds=200
    )
    result = plan(pool, policy)
    step_m, step_a = result.steps
    assert step_m.estimate_seconds == 8 + 100 + 200 + 8
    assert step_a.estimate_seconds == 300
    assert result.estimate_seconds == 616
    assert result.migrations == 4
    assert result.bytes_moved == 16 * GiB


def test_parallel_migrations_share_the_evacuation_longest_first():
    pool = make_pool({"m": [4, 2, 2], "a": []}, capacity=16)
    policy = Policy(parallel_migrations=2, patch_seconds=0, reboot_seconds=0)
    assert plan(pool, policy).steps[0].estimate_seconds == 4 + 4


# Determinism and scale


def test_the_same_input_gives_the_same_plan():
    pool = make_pool({"m": [1, 2, 3], "a": [3, 2, 1], "b": [2, 2]}, capacity=12)
    assert plan(pool, Policy(max_parallel_hosts=2)) == plan(pool, Policy(max_parallel_hosts=2))


@pytest.mark.parametrize("strategy", ["return", "upgraded-first"])
def test_a_64_host_5000_vm_pool_gets_a_feasible_plan_that_replays(strategy):
    rng = random.Random(7)
    layout: dict[str, list[float]] = {f"h{i:02d}": [] for i in range(64)}
    names = list(layout)
    for n in range(5000):
        layout[names[n % 64]].append(rng.choice([0.5, 1, 2, 4, 8]))
    pool = make_pool(layout, capacity={n: sum(layout[n]) / 0.8 for n in names})
    # Plan time at this scale is measured in bench/, not asserted here.
    result = plan(pool, Policy(strategy=strategy, max_parallel_hosts=4))
    assert result.feasible
    replay(result)


# Zones, headroom and automatic concurrency


def zoned(zones: dict[str, str], **policy: object) -> Policy:
    return Policy(zones=tuple(zones.items()), **policy)  # type: ignore[arg-type]


def test_a_batch_never_spans_two_zones_and_a_zone_goes_as_one():
    pool = make_pool({"m": [], "a1": [1], "b1": [1], "a2": [1], "b2": [1], "x": [1], "y": [1]})
    zones = {"m": "r1", "a1": "rack-a", "a2": "rack-a", "b1": "rack-b", "b2": "rack-b"}
    policy = zoned(zones, max_parallel_hosts=4, host_order=("m", "a1", "b1", "a2", "b2"))
    result = plan(pool, policy)
    # rack-a's hosts come together although the inventory interleaves the racks; hosts
    # with no zone go together after the zoned ones.
    assert [[s.host_name for s in b.steps] for b in result.batches] == [
        ["m"],
        ["a1", "a2"],
        ["b1", "b2"],
        ["x", "y"],
    ]
    assert [s.zone for s in result.batches[1].steps] == ["rack-a", "rack-a"]
    assert "no batch spans two zones" in result.concurrency.reason
    replay(result)


def test_headroom_keeps_a_destination_from_filling_up():
    pool = make_pool({"m": [9], "a": [0.5]}, capacity=10)
    assert plan(pool, Policy()).feasible
    refused = plan(pool, Policy(headroom=0.1))
    assert not refused.feasible
    reason = checks_named(refused, "capacity")[0].reason
    assert "no place for m-vm0 (9.0 GiB)" in reason
    assert "8.5 GiB free (less 10% headroom) in all" in reason
    assert reason.endswith("free memory there, lower rollup_headroom or add a host")
    auto = plan(pool, Policy(headroom=0.1, max_parallel_hosts="auto")).concurrency
    assert auto.reason == (
        "auto: up to 1 host at once; even alone, a host's VMs find no place with 10% headroom"
        " (see the capacity check)"
    )
    replay(plan(make_pool({"m": [8.5], "a": [0.5]}, capacity=10), Policy(headroom=0.1)))


def test_auto_takes_the_largest_batch_that_leaves_every_vm_a_place_and_says_why():
    # Eight hosts of 16 GiB, 4 GiB used on each; 25 % headroom leaves 8 GiB to fill on a
    # host. A batch of k moves 4k GiB onto the 8 - k others: k = 5 fits (20 <= 24),
    # k = 6 does not (24 > 16).
    layout = {f"h{i}": [2.0, 2.0] for i in range(8)}
    pool = make_pool(layout, capacity=16)
    result = plan(pool, Policy(max_parallel_hosts="auto", headroom=0.25))
    assert [len(b.steps) for b in result.batches] == [1, 5, 2]
    assert result.feasible and result.concurrency.hosts == 5
    replay(result)
    six = plan(pool, Policy(max_parallel_hosts=6, headroom=0.25))
    assert [len(b.steps) for b in six.batches] == [1, 5, 2]  # memory stops it at 5 too
    reason = result.concurrency.reason
    assert reason == (
        "auto: up to 5 hosts at once, the largest batch that leaves every VM a place with"
        " 25% headroom; adding h6 to a batch of 5 hosts would need 8.0 GiB more than is free"
    )


def test_auto_on_a_roomy_pool_takes_every_host_but_the_master_at_once():
    pool = make_pool({"m": [1], "a": [1], "b": [1], "c": [1]}, capacity=64)
    result = plan(pool, Policy(max_parallel_hosts="auto"))
    assert [len(b.steps) for b in result.batches] == [1, 3]
    assert (
        result.concurrency.reason == "auto: up to 3 hosts at once, every VM keeps a place even then"
    )
    replay(result)


def test_a_fixed_limit_the_pool_cannot_reach_says_what_stopped_it():
    pool = make_pool(
        {"m": [], "a": [6], "b": [6], "c": [3]}, capacity={"m": 10, "a": 8, "b": 8, "c": 8}
    )
    result = plan(pool, Policy(max_parallel_hosts=3))
    assert result.concurrency.hosts == 2
    assert result.concurrency.reason.startswith(
        "up to 2 hosts at once: rollup_max_parallel_hosts is 3; adding "
    )


# Pre-staging


def test_prestaging_takes_each_hosts_download_out_of_its_time_out_of_service():
    pool = make_pool({"m": [4], "a": [4], "b": [4]}, capacity=16)
    timing = {"patch_seconds": 100, "reboot_seconds": 200, "download_seconds": 60}
    staged = plan(pool, Policy(**timing))  # type: ignore[arg-type]
    unstaged = plan(pool, Policy(prestage=False, **timing))  # type: ignore[arg-type]
    assert staged.prestage.method == "ssh" and "yum -y update --downloadonly" in (
        staged.prestage.reason
    )
    assert (
        unstaged.prestage.method == "none" and "rollup_prestage: false" in unstaged.prestage.reason
    )
    for before, after in zip(unstaged.steps, staged.steps, strict=True):
        assert before.estimate_seconds - after.estimate_seconds == 60
    # One download for all hosts at once, before the first one goes out.
    assert staged.estimate_seconds == 60 + sum(b.estimate_seconds for b in staged.batches)
    assert unstaged.estimate_seconds - staged.estimate_seconds == 60 * (len(staged.steps) - 1)


def test_what_cannot_be_prestaged_says_why():
    pool = make_pool({"m": [1], "a": [1]})
    xenserver = dataclasses.replace(pool, flavor="xenserver")
    assert plan(xenserver, Policy(update="xapi")).prestage.method == "repository"
    libvirt = dataclasses.replace(pool, driver="libvirt")
    assert plan(libvirt, Policy()).prestage.reason == "a libvirt pool's hosts cannot download ahead"
    upgrade = plan(pool, Policy(target_version="8.3.0"))
    assert upgrade.prestage.method == "none" and "major upgrade" in upgrade.prestage.reason
