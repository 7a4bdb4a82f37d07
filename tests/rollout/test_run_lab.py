"""`rollup run` upgrades a lab pool over real SSH, real Ansible and real XML-RPC."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from rollup.model import Pool
from rollup.run.events import SEQUENCE
from tests.rollout.conftest import Lab, read_events
from tests.rollout.pool_watch import PoolWatch
from tests.rollout.reports import junit_cases, not_reached, valid_events

TARGET = "8.3.0"
# ansible-playbook's last line for a host whose task failed.
PLAY_RECAP = re.compile(r"^h2\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=1\b")


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
    with PoolWatch(lab.running.pool) as watch:
        result = lab.rollup(
            "run", str(lab.inventory), "--yes", "--no-tui", "--json", "--junit", str(junit)
        )
    assert result.returncode == 0, result.stderr
    after = lab.snapshot()
    assert_upgraded_and_whole(before, after)
    assert before.ha_enabled
    # rollup_ha disable-and-restore: HA off before the first host left service, kept
    # off while any host was out, and on again only once every host was back.
    assert {h for m in watch.moments if m.disabled for h in m.disabled} == {"h1", "h2", "h3", "h4"}
    assert watch.ha_while_a_host_was_out() == {False}
    assert watch.moments[-1].ha_enabled and not watch.moments[-1].disabled
    # Strategy `return`: the pool ends as it began, pinned VMs restarted at home.
    assert running(after) == running(before)

    # Every host went through every state, journaled in order.
    journaled = transitions(lab)
    for host in before.hosts:
        states = [state for name, state in journaled if name == host.name]
        assert states == list(SEQUENCE[1:]) or states == [
            s for s in SEQUENCE[1:] if s != "rebooting"
        ], states

    events = valid_events(result.stdout)
    assert events[-1]["kind"] == "run-finished" and events[-1]["outcome"] == "completed"
    assert any(e["kind"] == "ansible-task" for e in events)
    assert any(e["kind"] == "migration" and e["status"] == "done" for e in events)

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "4" and suite.get("failures") == "0"
    assert {case.get("name") for case in suite.iter("testcase")} == {"h1", "h2", "h3", "h4"}
    assert lab.running.password not in result.stdout + result.stderr


def test_a_failing_playbook_pauses_with_the_pool_safe_and_resume_completes(
    lab: Lab, tmp_path: Path
):
    lab.running.pool.set_ha(True)
    before = lab.snapshot()
    lab.set_faults({"hosts": {"h2": {"fail_patch": True}}})
    junit = tmp_path / "rollup.xml"
    with PoolWatch(lab.running.pool) as watch:
        result = lab.rollup(
            "run", str(lab.inventory), "--yes", "--no-tui", "--json", "--junit", str(junit)
        )
    assert result.returncode == 5, result.stderr
    assert "h2 failed while patching" in result.stderr
    assert "rollup resume" in result.stderr

    # HA is off while hosts are out of service. The run pauses with h1 at 8.3.0 and the
    # others at 8.2.1: xapi refuses HA while versions differ, so it stays off (and the
    # run says so) until the resume has done the last host.
    assert {h for m in watch.moments for h in m.disabled} == {"h1", "h2"}
    assert {m.ha_enabled for m in watch.moments if m.disabled} == {False}
    assert (watch.moments[-1].ha_enabled, watch.moments[-1].disabled) == (False, {"h2"})
    assert "HA stays off while the pool's hosts run different versions" in result.stderr

    events = valid_events(result.stdout)
    finished = events[-1]
    assert (finished["kind"], finished["outcome"], finished["exit_code"]) == (
        "run-finished",
        "paused",
        5,
    )
    assert (finished["hosts_done"], finished["hosts_failed"]) == (1, 1)
    failed = [e for e in events if e["kind"] == "action" and not e["ok"]]
    assert [(e["host_name"], e["state"], e["code"]) for e in failed] == [
        ("h2", "patching", "PLAYBOOK_FAILED")
    ]
    # The failure's evidence is the end of the playbook's own output: its recap line,
    # which only ansible-playbook prints (not the one-line error, nor rollup).
    evidence = failed[0]["evidence"]
    recap = [line for line in evidence if PLAY_RECAP.match(line)]
    assert len(recap) == 1 and evidence[-1] == recap[0], evidence
    assert not any(PLAY_RECAP.match(line) for line in failed[0]["error"].splitlines())
    # The log shows it under the failure line, indented and marked as quoted.
    log = result.stderr.splitlines()
    at = next(i for i, line in enumerate(log) if "h2       patching FAILED: " in line)
    quoted = [line[9:] for line in log[at + 1 : at + 1 + min(len(evidence), 10)]]
    assert quoted == [f"         | {line}" for line in evidence[-10:]]
    # `rollup status` keeps it for whoever looks later, in words and in JSON.
    run_id = finished["run_id"]
    status = lab.rollup("status", run_id)
    assert status.returncode == 0, status.stderr
    shown = status.stdout.splitlines()
    assert "h2: the last lines of its output" in shown
    assert f"  | {recap[0]}" in shown
    as_json = lab.rollup("status", run_id, "--json")
    hosts = {h["name"]: h for h in json.loads(as_json.stdout)["hosts"]}
    assert hosts["h2"]["evidence"] == evidence
    assert {name: h["evidence"] for name, h in hosts.items() if name != "h2"} == {
        "h1": [],
        "h3": [],
        "h4": [],
    }
    suite, cases = junit_cases(junit)
    assert set(cases) == {"h1", "h2", "h3", "h4"}, "every host of the plan has its case"
    not_reached(cases, {"h1", "h2"}, "paused")
    assert suite.get("failures") == "1"
    assert cases["h1"].find("failure") is None and cases["h1"].find("skipped") is None
    failure = cases["h2"].find("failure")
    assert failure is not None and failure.get("type") == "PLAYBOOK_FAILED"
    assert failure.get("message", "").startswith("patching: patch playbook failed")
    assert failure.text is not None and failure.text.splitlines() == evidence

    during = lab.snapshot()
    h2 = next(h for h in during.hosts if h.name == "h2")
    assert not h2.enabled and not during.resident(h2.id), "h2 must be disabled and empty"
    assert all(h.enabled for h in during.hosts if h.name != "h2")
    assert set(running(before)) <= set(running(during)) | _stopped_pinned(before, "h2")
    assert during.lock is None

    lab.set_faults({})
    with PoolWatch(lab.running.pool) as watch:
        resumed = lab.rollup("resume", "--yes", "--no-tui")
    assert resumed.returncode == 0, resumed.stderr
    after = lab.snapshot()
    assert_upgraded_and_whole(before, after)
    assert running(after) == running(before)
    # Resumed, HA stays off while hosts are worked on, and is on at the end.
    assert {m.ha_enabled for m in watch.moments if m.disabled} == {False}
    assert (watch.moments[-1].ha_enabled, watch.moments[-1].disabled) == (True, set())


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
    # The first run holds the pool's lock while it waits for approval (no --yes, no
    # terminal): the pool answers, so only the lock can refuse the second.
    child = lab.start_rollup("run", str(lab.inventory), "--no-tui", "--json")
    assert child.stdout is not None
    gate = lambda e: e["kind"] == "run-state" and e["state"] == "awaiting_approval"  # noqa: E731
    events = read_events(child.stdout, gate)
    run_id = events[-1]["run_id"]
    second = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
    # --break-lock takes over only an expired lock: a live run's lock is not stale.
    breaking = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui", "--break-lock")
    held = lab.snapshot().lock
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=120)
    assert second.returncode == 3, second.stderr
    assert run_id in second.stderr
    assert f"pid {child.pid}" in second.stderr
    assert breaking.returncode == 3, breaking.stderr
    assert f"the pool is locked by run {run_id}" in breaking.stderr
    assert held is not None and (held.run_id, held.pid) == (run_id, child.pid)


def test_a_stale_lock_of_a_killed_run_is_broken_only_with_break_lock(lab: Lab):
    before = lab.snapshot()
    child = lab.start_rollup("run", str(lab.inventory), "--yes", "--no-tui", "--json")
    assert child.stdout is not None
    run_id = read_events(child.stdout, lambda e: e["kind"] == "host-state")[-1]["run_id"]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    left = lab.running.pool.other_config["rollup.lock"]
    assert json.loads(left)["pid"] == child.pid
    # The killed run's lock once its TTL has run out (hours later): the same record,
    # expired a minute ago.
    expired = {**json.loads(left), "expires": time.time() - 60}
    lab.running.pool.remove_from_other_config("rollup.lock")
    lab.running.pool.add_to_other_config("rollup.lock", json.dumps(expired))

    refused = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
    assert refused.returncode == 3, refused.stderr
    assert f"locked by run {run_id} on " in refused.stderr
    assert f"(pid {child.pid}, started " in refused.stderr
    assert "if that run is gone, rerun with --break-lock" in refused.stderr
    still = lab.snapshot().lock
    assert still is not None and still.run_id == run_id, "refused: the lock is left alone"

    taken = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui", "--break-lock")
    assert taken.returncode == 0, taken.stderr
    assert_upgraded_and_whole(before, lab.snapshot())


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


def test_a_journal_that_stops_recording_stops_the_run_at_a_safe_point(lab: Lab):
    before = lab.snapshot()
    child = lab.start_rollup("run", str(lab.inventory), "--yes", "--no-tui", "--json")
    assert child.stdout is not None
    seen = read_events(
        child.stdout,
        lambda e: e["kind"] == "host-state" and e["host_name"] == "h1"
        and e["state"] == "evacuating",
    )  # fmt: skip
    run_id = seen[-1]["run_id"]
    # From another process, as a full disk or a broken state directory would: the
    # journal's events table refuses every write from now on (transitions still go in).
    with sqlite3.connect(lab.state / "journal.sqlite") as db:
        db.execute(
            "CREATE TRIGGER unwritable BEFORE INSERT ON events"
            " BEGIN SELECT RAISE(ABORT, 'the events table is unwritable'); END"
        )
    out, err = child.communicate(timeout=240)
    assert child.returncode == 5, err
    events = valid_events([*seen, *(json.loads(line) for line in out.splitlines())])
    finished = events[-1]
    assert (finished["kind"], finished["outcome"]) == ("run-finished", "paused")
    message = finished["message"]
    assert message.startswith(
        "the journal stopped recording this run: event sink JournalSink failed"
        " (IntegrityError: the events table is unwritable); no new host starts."
    ), message
    assert f"fix the state directory {lab.state}, then run `rollup resume {run_id}`" in message
    # Logged once, as it happened; the JSON lines went on to the end.
    logged = [line for line in err.splitlines() if " rollup ERROR event sink " in line]
    assert len(logged) == 1 and "the run stops at its next safe point" in logged[0], err
    # The safe point: the host under way finished its turn, no other host started.
    started = {e["host_name"] for e in events if e["kind"] == "host-state"}
    done = {e["host_name"] for e in events if e["kind"] == "host-state" and e["state"] == "done"}
    assert started == done and "h1" in done and len(done) < len(before.hosts), started
    during = lab.snapshot()
    assert all(h.enabled and h.live for h in during.hosts), "no host left out of service"
    assert {h.name for h in during.hosts if h.version == TARGET} == done
    assert set(running(before)) <= set(running(during)), "every VM that ran runs"
    assert during.lock is None

    # Fixed, the run resumes from its journal and finishes the pool.
    with sqlite3.connect(lab.state / "journal.sqlite") as db:
        db.execute("DROP TRIGGER unwritable")
    resumed = lab.rollup("resume", run_id, "--yes", "--no-tui")
    assert resumed.returncode == 0, resumed.stderr
    assert_upgraded_and_whole(before, lab.snapshot())
