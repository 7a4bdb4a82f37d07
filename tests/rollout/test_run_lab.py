"""`rollup run` upgrades a lab pool over real SSH, real Ansible and real XML-RPC."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema

from rollup.event_schema import schema
from rollup.host_upgrade import SEQUENCE
from rollup.model import Pool
from tests.rollout.conftest import Lab, read_events

TARGET = "8.3.0"


def running(pool: Pool) -> dict[str, str]:
    return {vm.id: vm.host or "" for vm in pool.vms if vm.running}


def assert_upgraded_and_whole(before: Pool, after: Pool) -> None:
    """Every host at the target and enabled, every VM that ran runs, no lock left."""
    for host in after.hosts:
        assert (host.name, host.version, host.enabled, host.live) == (
            host.name,
            TARGET,
            True,
            True,
        )
    assert set(running(before)) <= set(running(after)), "a VM that was running is not"
    assert after.lock is None
    assert after.ha_enabled == before.ha_enabled


def transitions(lab: Lab) -> list[tuple[str, str]]:
    with sqlite3.connect(lab.state / "journal.sqlite") as db:
        return db.execute("SELECT host_name, state FROM transitions ORDER BY seq").fetchall()


def test_a_lab_pool_is_upgraded_end_to_end_and_every_vm_ends_where_it_started(
    lab: Lab, tmp_path: Path
):
    lab.running.pool.set_ha(True)
    before = lab.snapshot()
    junit = tmp_path / "rollup.xml"
    result = lab.rollup(
        "run", str(lab.inventory), "--yes", "--no-tui", "--json", "--junit", str(junit)
    )
    assert result.returncode == 0, result.stderr
    after = lab.snapshot()
    assert_upgraded_and_whole(before, after)
    assert before.ha_enabled
    # Strategy `return`: the pool ends as it began, pinned VMs restarted at home.
    assert running(after) == running(before)

    # Every host went through every state, journaled in order.
    journaled = transitions(lab)
    for host in before.hosts:
        states = [state for name, state in journaled if name == host.name]
        assert states == list(SEQUENCE[1:]) or states == [
            s for s in SEQUENCE[1:] if s != "rebooting"
        ], states

    validator = jsonschema.Draft202012Validator(schema())
    events = [json.loads(line) for line in result.stdout.splitlines()]
    for event in events:
        validator.validate(event)
    assert events[-1]["kind"] == "run-finished" and events[-1]["outcome"] == "completed"
    assert any(e["kind"] == "ansible-task" for e in events)
    assert any(e["kind"] == "migration" and e["status"] == "done" for e in events)

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "4" and suite.get("failures") == "0"
    assert {case.get("name") for case in suite.iter("testcase")} == {"h1", "h2", "h3", "h4"}
    assert lab.running.password not in result.stdout + result.stderr


def test_a_failing_playbook_pauses_with_the_pool_safe_and_resume_completes(lab: Lab):
    before = lab.snapshot()
    lab.set_faults({"hosts": {"h2": {"fail_patch": True}}})
    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
    assert result.returncode == 5, result.stderr
    assert "h2 failed while patching" in result.stderr
    assert "rollup resume" in result.stderr

    during = lab.snapshot()
    h2 = next(h for h in during.hosts if h.name == "h2")
    assert not h2.enabled and not during.resident(h2.id), "h2 must be disabled and empty"
    assert all(h.enabled for h in during.hosts if h.name != "h2")
    assert set(running(before)) <= set(running(during)) | _stopped_pinned(before, "h2")
    assert during.lock is None

    lab.set_faults({})
    resumed = lab.rollup("resume", "--yes", "--no-tui")
    assert resumed.returncode == 0, resumed.stderr
    after = lab.snapshot()
    assert_upgraded_and_whole(before, after)
    assert running(after) == running(before)


def _stopped_pinned(pool: Pool, host_name: str) -> set[str]:
    """Pinned VMs of a host: shut down on purpose while it is upgraded (policy)."""
    host = next(h for h in pool.hosts if h.name == host_name)
    return {vm.id for vm in pool.resident(host.id) if vm.blockers}


def _kill_when(lab: Lab, host_name: str, state: str) -> None:
    child = lab.start_rollup("run", str(lab.inventory), "--yes", "--no-tui", "--json")
    assert child.stdout is not None
    read_events(
        child.stdout,
        lambda e: e["kind"] == "host-state" and e["host_name"] == host_name
        and e["state"] == state,
    )  # fmt: skip
    os.kill(child.pid, signal.SIGKILL)
    child.wait()


def test_a_controller_killed_during_an_evacuation_resumes_with_nothing_lost(lab: Lab):
    before = lab.snapshot()
    _kill_when(lab, "h2", "evacuating")
    resumed = lab.rollup("resume", "--yes", "--no-tui")
    assert resumed.returncode == 0, resumed.stderr
    after = lab.snapshot()
    assert_upgraded_and_whole(before, after)
    assert running(after) == running(before)


def test_a_controller_killed_during_the_master_reboot_resumes_with_nothing_lost(lab: Lab):
    before = lab.snapshot()
    _kill_when(lab, "h1", "rebooting")
    resumed = lab.rollup("resume", "--yes", "--no-tui")
    assert resumed.returncode == 0, resumed.stderr
    after = lab.snapshot()
    assert_upgraded_and_whole(before, after)
    assert running(after) == running(before)
    # h1 was rebooted once: resume waited for the boot it had asked for.
    reboots = [s for n, s in transitions(lab) if n == "h1" and s == "rebooting"]
    assert len(reboots) == 1


def test_a_second_run_on_the_same_pool_is_refused_naming_the_owner(lab: Lab):
    child = lab.start_rollup("run", str(lab.inventory), "--yes", "--no-tui", "--json")
    assert child.stdout is not None
    events = read_events(child.stdout, lambda e: e["kind"] == "host-state")
    run_id = events[-1]["run_id"]
    second = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=120)
    assert second.returncode == 3, second.stderr
    assert run_id in second.stderr
    assert "pid" in second.stderr


def test_the_canary_gate_waits_for_approval_from_another_shell(lab: Lab):
    before = lab.snapshot()
    inventory = lab.write_inventory(rollup_canary=1)
    # No --yes and no terminal: the run waits for `rollup approve` at the start and
    # again after its canary host.
    child = lab.start_rollup("run", str(inventory), "--no-tui", "--json")
    assert child.stdout is not None
    gate = lambda e: e["kind"] == "run-state" and e["state"] == "awaiting_approval"  # noqa: E731
    events = read_events(child.stdout, gate)
    run_id = events[-1]["run_id"]
    waiting = lab.snapshot()
    assert (waiting.hosts, waiting.vms) == (before.hosts, before.vms), "nothing may move yet"
    assert lab.rollup("approve", run_id).returncode == 0
    events = read_events(child.stdout, gate)
    done = {e["host_name"] for e in events if e["kind"] == "host-state" and e["state"] == "done"}
    assert done == {"h1"}, "the canary gate comes after the first host"
    assert lab.rollup("approve", run_id).returncode == 0
    _, err = child.communicate(timeout=240)
    assert child.returncode == 0, err
    assert_upgraded_and_whole(before, lab.snapshot())
