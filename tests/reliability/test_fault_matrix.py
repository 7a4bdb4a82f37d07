"""Fault matrix: the lab's faults during a real run, and the way back with `rollup resume`.

Each case starts a fresh 3-host, 12-VM lab (seed 1: h1 holds 2 VMs, h2 holds 3 movable
VMs and vpn-01 pinned to its local disk, h3 holds 5), injects one fault, runs
`rollup run --yes --no-tui`, and asserts what a user would see: the exit code, the
message that names the host and the cause, and a pool where nothing is lost (every VM
that ran runs, every host in service except the one the message names). Then the fault
is cleared and `rollup resume` must finish the job, with every invariant of the crash
matrix checked at the end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from rollup.lab.releases import CURRENT_XCP_NG as TARGET_VERSION
from rollup.lab.xapi import migration
from rollup.model import Pool
from tests.reliability.conftest import MakeLab
from tests.reliability.matrix import Matrix, record_row
from tests.reliability.pool_checks import (
    assert_finished,
    assert_vms_whole,
    host_named,
    host_state,
    latest_run,
    pinned_on,
    running,
    start_rollup,
)
from tests.rollout.conftest import Lab
from tests.rollout.reports import junit_cases, not_reached, valid_events

MATRIX = Matrix("Fault matrix: a fault during the run, then the fault cleared and resumed")

EXIT_OK, EXIT_ABORTED, EXIT_PAUSED = 0, 4, 5


@pytest.fixture(scope="module")
def matrix() -> Iterator[Matrix]:
    yield MATRIX
    print("\n" + MATRIX.table())


def vm_named(pool: Pool, name: str) -> Any:
    return next(vm for vm in pool.vms if vm.name == name)


def assert_paused_safe(before: Pool, now: Pool, failed: str, stopped: set[str] = frozenset()):
    """A paused run: only the failed host out of service, every other VM running."""
    out = {h.name for h in now.hosts if not (h.enabled and h.live)}
    assert out <= {failed}, f"hosts out of service besides {failed}: {out}"
    assert_vms_whole(before, now, stopped_on_purpose=stopped)
    assert now.lock is None


def resume_and_finish(lab: Lab, before: Pool, row: Any) -> Pool:
    resumed = lab.rollup("resume", "--yes", "--no-tui")
    row.note(f"resume exit {resumed.returncode}")
    assert resumed.returncode == EXIT_OK, resumed.stderr
    after = assert_finished(lab, before, latest_run(lab))
    row.note("pool whole")
    return after


def transitions_of(lab: Lab, host: str) -> list[str]:
    from rollup.run.journal import Journal

    journal = Journal(lab.state)
    try:
        return [t.state for t in journal.transitions(latest_run(lab)) if t.host_name == host]
    finally:
        journal.close()


def test_a_migration_that_fails_twice_is_retried_and_the_run_completes(
    make_lab: MakeLab, matrix: Matrix
):
    with record_row(matrix, "migration fails twice (backup-01 on h1)") as row:
        lab = make_lab()
        before = lab.snapshot()
        lab.set_faults({"vms": {"backup-01": {"fail_migration": 2}}})
        result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
        row.note(f"run exit {result.returncode}")
        assert result.returncode == EXIT_OK, result.stderr
        assert result.stderr.count("migration of backup-01") == 2, result.stderr
        assert_finished(lab, before, latest_run(lab))
        assert running(lab.snapshot()) == running(before), "every VM back home"
        row.note("2 failed attempts, retried, pool whole")


def test_a_vm_that_never_migrates_pauses_with_every_vm_running_and_resume_completes(
    make_lab: MakeLab, matrix: Matrix
):
    with record_row(matrix, "a VM never migrates (cache-01 on h2)") as row:
        lab = make_lab()
        before = lab.snapshot()
        lab.set_faults({"vms": {"cache-01": {"fail_migration": True}}})
        result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
        row.note(f"run exit {result.returncode}")
        assert result.returncode == EXIT_PAUSED, result.stderr
        assert "h2 failed while evacuating: could not evacuate cache-01" in result.stderr
        assert "rollup resume" in result.stderr
        # Under the failure, the hypervisor's own words: its code and raw parameters
        # (refs, not the names the message uses).
        log = result.stderr.splitlines()
        at = next(i for i, line in enumerate(log) if "h2       evacuating FAILED: " in line)
        said = log[at + 1][9:]
        assert said.startswith("         | VM_MIGRATE_FAILED OpaqueRef:"), log[at : at + 2]
        assert said.endswith(" lab fault: migration failed")
        # Nothing was patched: h2 is back in service, nothing stopped, cache-01 on it.
        assert "h2 is enabled again, nothing was patched" in result.stderr
        during = lab.snapshot()
        h2 = host_named(during, "h2")
        assert vm_named(during, "cache-01").host == h2.id, "cache-01 still runs on h2"
        assert_paused_safe(before, during, failed="")
        row.note("paused, h2 back in service, every VM running")

        lab.set_faults({})
        resume_and_finish(lab, before, row)


def test_a_host_that_never_returns_pauses_naming_it_and_resume_completes(
    make_lab: MakeLab, matrix: Matrix
):
    with record_row(matrix, "h2 never returns (no_return, timeout 2s)") as row:
        lab = make_lab()
        before = lab.snapshot()
        inventory = lab.write_inventory(rollup_host_timeout="2s")
        lab.set_faults({"hosts": {"h2": {"no_return": True}}})
        result = lab.rollup("run", str(inventory), "--yes", "--no-tui")
        row.note(f"run exit {result.returncode}")
        assert result.returncode == EXIT_PAUSED, result.stderr
        assert "h2 failed while rebooting" in result.stderr
        assert "did not come back within 2.0s" in result.stderr
        during = lab.snapshot()
        assert not host_named(during, "h2").live
        assert_paused_safe(before, during, "h2", stopped=pinned_on(before, "h2"))
        row.note("paused naming h2")

        lab.set_faults({})
        resume_and_finish(lab, before, row)
        assert transitions_of(lab, "h2").count("rebooting") == 2
        assert running(lab.snapshot()) == running(before), "every VM back home"


def test_a_host_back_at_its_old_version_pauses_then_resume_patches_and_reboots_it_again(
    make_lab: MakeLab, matrix: Matrix
):
    with record_row(matrix, "h2 returns at its old version") as row:
        lab = make_lab()
        before = lab.snapshot()
        lab.set_faults({"hosts": {"h2": {"return_old_version": True}}})
        result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
        row.note(f"run exit {result.returncode}")
        assert result.returncode == EXIT_PAUSED, result.stderr
        assert "h2 failed while verifying" in result.stderr
        assert f"came back at version 8.2.1, expected {TARGET_VERSION}" in result.stderr
        during = lab.snapshot()
        assert host_named(during, "h2").version == "8.2.1"
        assert_paused_safe(before, during, "h2", stopped=pinned_on(before, "h2"))
        row.note("paused naming both versions")

        lab.set_faults({})
        resume_and_finish(lab, before, row)
        # Verifying again would fail again: resume patched h2 and rebooted it once more.
        states = transitions_of(lab, "h2")
        assert states.count("patching") == 2 and states.count("rebooting") == 2, states
        row.note("h2 patched and rebooted again")


def test_the_master_api_dropping_during_its_reboot_needs_no_intervention(
    make_lab: MakeLab, matrix: Matrix
):
    with record_row(matrix, "master API drops during its reboot") as row:
        lab = make_lab()
        before = lab.snapshot()
        # 1000 simulated seconds beyond the master's normal reboot (5 s at speed 200).
        lab.set_faults({"master_api_drop": {"seconds": 1000, "when": "next-reboot"}})
        result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
        row.note(f"run exit {result.returncode}")
        assert result.returncode == EXIT_OK, result.stderr
        assert lab.running.pool.api_down_until > 0, "the drop did happen"
        assert_finished(lab, before, latest_run(lab))
        assert running(lab.snapshot()) == running(before)
        row.note("completed, pool whole")


def test_a_host_refusing_ssh_pauses_naming_it_and_resume_completes(
    make_lab: MakeLab, matrix: Matrix
):
    with record_row(matrix, "h2 refuses SSH") as row:
        lab = make_lab()
        before = lab.snapshot()
        lab.set_faults({"hosts": {"h2": {"refuse_ssh": True}}})
        result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
        row.note(f"run exit {result.returncode}")
        assert result.returncode == EXIT_PAUSED, result.stderr
        assert "h2 failed while" in result.stderr
        # Found in 'checking', before anything moved: h2 stays in service, nothing stops.
        assert "h2 failed while checking: h2 does not answer SSH at 127." in result.stderr
        assert "h2 is enabled again, nothing was patched" in result.stderr
        assert_paused_safe(before, lab.snapshot(), failed="")
        row.note("paused naming h2, nothing moved")

        lab.set_faults({})
        resume_and_finish(lab, before, row)


def test_a_failing_playbook_pauses_naming_the_host_and_resume_completes(
    make_lab: MakeLab, matrix: Matrix
):
    with record_row(matrix, "the playbook fails on h3") as row:
        lab = make_lab()
        before = lab.snapshot()
        lab.set_faults({"hosts": {"h3": {"fail_patch": True}}})
        result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
        row.note(f"run exit {result.returncode}")
        assert result.returncode == EXIT_PAUSED, result.stderr
        assert "h3 failed while patching: patch playbook failed" in result.stderr
        assert "lab fault fail-patch is set" in result.stderr
        during = lab.snapshot()
        assert not during.resident(host_named(during, "h3").id), "h3 is empty"
        assert_paused_safe(before, during, "h3")
        row.note("paused naming h3 and the task")

        lab.set_faults({})
        resume_and_finish(lab, before, row)


def test_a_vm_whose_way_home_fails_keeps_running_elsewhere_and_the_host_is_done(
    make_lab: MakeLab, matrix: Matrix
):
    with record_row(matrix, "cache-01 cannot go back to h2") as row:
        lab = make_lab()
        before = lab.snapshot()
        child = start_rollup(lab, "run", str(lab.inventory), "--yes", "--no-tui")
        # Once h2 is empty, cache-01's migrations start failing: its way home fails.
        child.until(host_state("h2", "patching"))
        lab.set_faults({"vms": {"cache-01": {"fail_migration": True}}})
        code = child.finish()
        row.note(f"run exit {code}")
        assert code == EXIT_OK, child.stderr()
        assert "h2: 1 VM stays where it runs: cache-01" in child.stderr()
        after = assert_finished(lab, before, child.run_id)
        cache = vm_named(after, "cache-01")
        assert cache.running and cache.host != host_named(after, "h2").id
        row.note("warning names cache-01, it runs on another host")


def fill_when_back(lab: Lab, host_name: str, leave: int) -> threading.Thread:
    """As soon as the host is enabled again after its reboot, another tool (a load
    balancer, an admin) live-migrates VMs that do not live there onto it, until only
    `leave` bytes are free."""
    pool = lab.running.pool
    host = pool.host_named(host_name)
    booted = host.boot_time

    def fill() -> None:
        with pool.changed:
            while not (host.boot_time != booted and host.enabled) and not pool.closed:
                pool.changed.wait(0.005)
            room = pool.memory_free(host.ref) - leave
            strangers = sorted(
                (
                    vm
                    for vm in pool.vms.values()
                    if not vm.is_control_domain
                    and vm.power_state == "Running"
                    and vm.affinity != host.ref
                    and vm.resident_on != host.ref
                ),
                key=lambda vm: -vm.footprint,
            )
            chosen = []
            for vm in strangers:
                if vm.footprint <= room:
                    chosen.append(vm)
                    room -= vm.footprint
        movers = [
            threading.Thread(target=migration.pool_migrate, args=(pool, vm.ref, host.ref))
            for vm in chosen
        ]
        for mover in movers:
            mover.start()
        for mover in movers:
            mover.join()

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    return thread


def test_memory_short_on_the_way_back_leaves_vms_running_elsewhere_with_a_warning(
    make_lab: MakeLab, matrix: Matrix
):
    with record_row(matrix, "memory short when VMs go back to h2") as row:
        lab = make_lab()
        before = lab.snapshot()
        pool = lab.running.pool
        h2 = pool.host_named("h2")
        pinned = pool.vm_named("vpn-01")
        smallest = min(
            (vm for vm in pool.resident_vms(h2.ref) if not vm.pin), key=lambda vm: vm.footprint
        )
        # Room for the pinned VM (it can run nowhere else) and one small VM, not for all.
        filler = fill_when_back(lab, "h2", pinned.footprint + smallest.footprint + 2**29)
        result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
        filler.join(timeout=30)
        row.note(f"run exit {result.returncode}")
        assert result.returncode == EXIT_OK, result.stderr
        assert "stay where they run" in result.stderr
        assert "not enough memory on" in result.stderr
        after = assert_finished(lab, before, latest_run(lab))
        assert vm_named(after, "vpn-01").host == host_named(after, "h2").id
        row.note("warning names the VMs left, vpn-01 restarted at home")


def test_an_operator_abort_mid_evacuation_leaves_the_pool_safe(make_lab: MakeLab, matrix: Matrix):
    with record_row(matrix, "operator aborts mid-evacuation of h2") as row:
        lab = make_lab()
        before = lab.snapshot()
        # A slow migration network (16 MiB/s): h2's evacuation lasts long enough for
        # `rollup abort` from another shell to land in the middle of it.
        lab.running.pool.bandwidth = 16 * 2**20
        junit = lab.dir.parent / "rollup.xml"
        child = start_rollup(
            lab, "run", str(lab.inventory), "--yes", "--no-tui", "--junit", str(junit)
        )
        child.until(host_state("h2", "evacuating"))
        sent = lab.rollup("abort", child.run_id)
        assert sent.returncode == 0, sent.stderr
        code = child.finish()
        row.note(f"run exit {code}")
        assert code == EXIT_ABORTED, child.stderr()
        # What a pipeline reads: every event valid, the run aborted, h2's case says so.
        finished = valid_events(child.events)[-1]
        assert (finished["kind"], finished["outcome"], finished["exit_code"]) == (
            "run-finished",
            "aborted",
            EXIT_ABORTED,
        )
        suite, cases = junit_cases(junit)
        assert set(cases) == {"h1", "h2", "h3"}, "every host of the plan has its case"
        not_reached(cases, {"h1", "h2"}, "aborted")
        assert suite.get("failures") == "1"
        assert cases["h1"].find("failure") is None
        aborted = cases["h2"].find("failure")
        assert aborted is not None and aborted.get("type") == "ABORTED"
        assert aborted.get("message") == "evacuating: the run was aborted before this host's patch"
        err = child.stderr()
        # h2 was never patched: it is back in service, nothing left stopped on it.
        assert "h2: the run was aborted before this host's patch" in err, err
        assert "h2 is enabled again, nothing was patched" in err, err
        during = lab.snapshot()
        assert {h.name: h.version for h in during.hosts} == {
            "h1": TARGET_VERSION,
            "h2": "8.2.1",
            "h3": "8.2.1",
        }
        assert_paused_safe(before, during, failed="")
        row.note("aborted, every host in service, every VM running")

        # An aborted run is over; a new run finishes the job.
        lab.running.pool.bandwidth = 2**30
        again = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
        row.note(f"new run exit {again.returncode}")
        assert again.returncode == EXIT_OK, again.stderr
        assert_finished(lab, before, latest_run(lab), hosts={"h2", "h3"})
        row.note("pool whole")
