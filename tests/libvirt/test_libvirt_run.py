"""`rollup plan` and `rollup run` on a libvirt pool: real libvirtd, real QEMU live migration.

Every guest counts on its serial port; a count that goes on after the run, on the host
the guest ended on, is the proof that it kept running through its migrations.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import libvirt

from rollup.lab.faults import HostFaults
from rollup.model import Pool
from tests.libvirt.conftest import TARGET, Lab, events_of


def wait_counting(lab: Lab) -> dict[str, int]:
    """Each guest's counter once every guest has written one."""
    deadline = time.monotonic() + 30
    while True:
        counts = lab.counts()
        if all(count is not None for count in counts.values()):
            return {name: count for name, count in counts.items() if count is not None}
        assert time.monotonic() < deadline, f"guests not counting: {counts}"
        time.sleep(0.2)


def assert_upgraded_and_whole(lab: Lab, before: Pool, counted: dict[str, int]) -> Pool:
    """Every host back at the target and enabled, every guest running and still counting."""
    after = lab.snapshot()
    for host in after.hosts:
        assert (host.name, host.version, host.enabled, host.live) == (host.name, TARGET, True, True)
        old = next(h for h in before.hosts if h.id == host.id)
        assert host.boot_mark != old.boot_mark, f"{host.name} did not reboot"
    assert after.lock is None
    assert {vm.name for vm in after.vms if vm.running} == {g.name for g in lab.running.guests}
    time.sleep(1.0)  # two ticks
    for name, count in lab.counts().items():
        assert count is not None and count > counted[name], (name, counted[name], count)
    return after


def assert_planned_by_policy_alone(lab: Lab) -> None:
    """A pool without a master: hosts in inventory order, every guest out and back."""
    result = lab.rollup("plan", str(lab.inventory), "--format", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert (plan["pool"]["driver"], plan["pool"]["master"], plan["feasible"]) == (
        "libvirt",
        None,
        True,
    )
    order = [step["host"]["name"] for batch in plan["batches"] for step in batch["steps"]]
    assert order == ["h1", "h2", "h3"]
    assert plan["totals"]["migrations"] == 8


def test_a_libvirt_pool_is_upgraded_by_live_migration_with_every_guest_counting_on(
    lab: Lab,
) -> None:
    before = lab.snapshot()
    counted = wait_counting(lab)
    assert_planned_by_policy_alone(lab)
    assert lab.snapshot().vms == before.vms, "a plan changes nothing"
    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui", "--json")
    assert result.returncode == 0, result.stderr
    events = events_of(result.stdout)
    assert events[-1]["kind"] == "run-finished" and events[-1]["outcome"] == "completed"
    assert sorted(lab.running.reboots) == ["h1", "h2", "h3"]
    after = assert_upgraded_and_whole(lab, before, counted)
    # Strategy `return`: every guest runs where it started.
    assert {vm.id: vm.host for vm in after.vms} == {vm.id: vm.host for vm in before.vms}

    moves = migrations(events)
    assert len(moves) == events[-1]["migrations"] == 8
    for (vm, dest), progress in moves.items():
        # The driver reports libvirt's job stats while (and once) the move runs.
        assert progress and all(0 < value <= 1 for value in progress), (vm, dest, progress)

    # libvirt's own record of each guest's last move, on the host it ended on.
    for guest in lab.running.guests:
        host = lab.running.hosts[guest.home]
        conn = libvirt.openReadOnly(host.uri)
        try:
            stats = conn.lookupByName(guest.name).jobStats(
                libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED
            )
        finally:
            conn.close()
        assert stats["type"] == libvirt.VIR_DOMAIN_JOB_COMPLETED, stats
        assert stats["operation"] == libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN, stats
        assert stats["memory_total"] > 0 and "downtime" in stats, stats


def migrations(events: list[dict[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """(VM name, destination) of every finished migration → its running progress values."""
    running: dict[tuple[str, str], list[float]] = {}
    done: dict[tuple[str, str], list[float]] = {}
    for event in events:
        if event["kind"] != "migration":
            continue
        key = (event["vm_name"], event["dest_name"])
        if event["status"] == "started":
            running[key] = []
        elif event["status"] == "running":
            running[key].append(event["progress"])
        elif event["status"] == "done":
            done[key] = running.pop(key)
    return done


def test_a_failing_playbook_pauses_with_the_pool_safe_and_resume_completes(lab: Lab) -> None:
    before = lab.snapshot()
    counted = wait_counting(lab)
    lab.running.hosts["h1"].machine.set_faults(HostFaults(fail_patch=True))
    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
    assert result.returncode == 5, result.stderr
    assert "h1 failed while patching" in result.stderr
    assert "rollup resume" in result.stderr

    during = lab.snapshot()
    h1 = next(h for h in during.hosts if h.name == "h1")
    assert not h1.enabled and not during.resident(h1.id), "h1 must be disabled and empty"
    assert all(h.enabled for h in during.hosts if h.name != "h1")
    assert all(vm.running for vm in during.vms) and len(during.vms) == 4
    assert during.lock is None

    lab.running.hosts["h1"].machine.set_faults(HostFaults())
    resumed = lab.rollup("resume", "--yes", "--no-tui")
    assert resumed.returncode == 0, resumed.stderr
    assert_upgraded_and_whole(lab, before, counted)


def test_a_controller_killed_during_a_live_migration_resumes_with_every_guest_running(
    lab: Lab,
) -> None:
    before = lab.snapshot()
    counted = wait_counting(lab)
    child = lab.start_rollup("run", str(lab.inventory), "--yes", "--no-tui", "--json")
    assert child.stdout is not None
    for line in child.stdout:
        event = json.loads(line)
        if event["kind"] == "migration" and event["status"] == "started":
            break
    time.sleep(0.3)  # libvirt's migration job is under way
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()

    resumed = lab.rollup("resume", "--yes", "--no-tui")
    assert resumed.returncode == 0, resumed.stderr
    assert_upgraded_and_whole(lab, before, counted)
