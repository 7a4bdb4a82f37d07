"""`rollup plan`, `run`, `resume`, `status` and `report` on a Proxmox VE lab, end to end.

The real command against the lab's PVE API (HTTPS, API token, the lab's CA) and its
nodes' sshd (ha-manager, apt through playbooks/proxmox-update.yml, boot ids). What the
run did is checked through proxmoxer: nothing pending on any node, no node left in
maintenance, Ceph's noout as it was, every guest back on its node.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import yaml

from rollup.lab import LabSpec
from rollup.lab.hosts import stop_stale_daemons
from rollup.lab.xapi.running import RunningLab
from rollup.output.report import plan_schema
from tests.proxmox.conftest import PveLab
from tests.rollout.conftest import read_events, run_rollup
from tests.rollout.reports import junit_cases, valid_events

REPO = Path(__file__).resolve().parents[2]


def test_a_run_patches_every_node_and_leaves_the_cluster_as_it_found_it(pve: PveLab) -> None:
    before = pve.placement()
    pending = pve.pending()
    assert any(pending.values()), "the lab starts with updates pending"
    plan = pve.rollup("plan", str(pve.inventory), "--format", "json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    jsonschema.Draft202012Validator(plan_schema()).validate(planned)  # what pipelines read
    assert planned["pool"]["driver"] == planned["pool"]["flavor"] == "proxmox"
    to_patch = {s["host"]["name"] for batch in planned["batches"] for s in batch["steps"]}
    assert to_patch == {node for node, updates in pending.items() if updates}

    junit = pve.dir / "rollup.xml"
    run = pve.rollup(
        "run", str(pve.inventory), "--yes", "--no-tui", "--json", "--junit", str(junit)
    )
    assert run.returncode == 0, run.stderr + run.stdout
    events = valid_events(run.stdout)
    moved = [e for e in events if e["kind"] == "migration" and e["status"] != "running"]
    assert moved and all(e["status"] in ("started", "done") for e in moved), "none failed"
    suite, cases = junit_cases(junit)
    assert set(cases) == to_patch and suite.get("failures") == "0"
    assert "pre-staged 2 of 2 hosts" in run.stderr  # apt-get -d on every node first
    assert "noout flag (a rebooting node's OSDs stay in): set for the run" in run.stderr
    assert "noout flag (a rebooting node's OSDs stay in): restored" in run.stderr
    assert pve.pending() == {node: [] for node in pending}
    assert pve.in_maintenance() == set()
    assert not pve.noout()
    # Strategy return: every guest runs where it ran (the pinned one was stopped and
    # started again there).
    assert pve.placement() == before

    status = pve.rollup("status", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["state"] == "completed"
    assert {h["name"] for h in shown["hosts"] if h["state"] == "done"} == to_patch
    report = pve.rollup("report", "--format", "markdown")
    assert report.returncode == 0, report.stderr
    assert all(node in report.stdout for node in to_patch)

    # The API token is a secret: not in any output, nor anywhere in the state directory
    # (journal, logs, Ansible's run files).
    token = pve.running.password.encode()
    assert all(token not in out.encode() for out in (run.stdout, run.stderr, status.stdout))
    leaked = [p for p in pve.state.rglob("*") if p.is_file() and token in p.read_bytes()]
    assert leaked == []


def test_a_failed_patch_on_the_inventorys_own_lab_pauses_and_resume_finishes(
    tmp_path: Path,
) -> None:
    """inventories/lab-proxmox.yml: the lab lives in each rollup process, so the resume
    brings back the cluster the paused run left, nodes in maintenance included."""
    faults = tmp_path / "faults.yml"
    faults.write_text(yaml.safe_dump({"hosts": {"h2": {"fail_patch": True}}}))
    data = yaml.safe_load((REPO / "inventories/lab-proxmox.yml").read_text())
    data["all"]["children"]["lab"]["vars"]["rollup_lab"].update(speed=200, faults=str(faults))
    inventory = tmp_path / "lab-proxmox.yml"
    inventory.write_text(yaml.safe_dump(data))
    state = tmp_path / "state"
    spec = LabSpec(flavor="proxmox", hosts=3, vms=12, seed=1, speed=200, ssh=True)
    try:
        run = run_rollup(state, "run", str(inventory), "--yes", "--no-tui")
        assert run.returncode == 5, run.stderr + run.stdout
        paused = json.loads(run_rollup(state, "status", "--json").stdout)
        failed = {h["name"]: h for h in paused["hosts"]}["h2"]
        assert failed["state"] == "failed"
        assert "at task 'Upgrade the packages'" in failed["detail"], failed
        assert "E: lab fault fail-patch" in failed["detail"], failed
        with restored(spec, state) as pve:
            # Paused at the failed node: it stays out of placement until someone looks;
            # noout is the run's only while it runs.
            assert pve.in_maintenance() == {"h2"} and not pve.noout()

        faults.write_text("{}\n")
        resumed = run_rollup(state, "resume", "--yes", "--no-tui")
        assert resumed.returncode == 0, resumed.stderr + resumed.stdout
        assert "noout flag (a rebooting node's OSDs stay in): set again for the resumed run" in (
            resumed.stderr
        )
        with restored(spec, state) as pve:
            assert all(updates == [] for updates in pve.pending().values())
            assert pve.in_maintenance() == set() and not pve.noout()
    finally:
        # A rollup killed by a timeout leaves its lab's sshd daemons: stop them.
        stop_stale_daemons(state / "labs" / "lab")


@contextlib.contextmanager
def restored(spec: LabSpec, state: Path) -> Iterator[PveLab]:
    """The in-process lab the last rollup left, brought back to look at it."""
    running = RunningLab.start_for(spec, state / "labs" / "lab", restore=True)
    try:
        assert running.restored
        yield PveLab(running, running.directory, state, state / "unused-faults.yml")
    finally:
        running.stop()


def test_wrong_credentials_an_untrusted_certificate_or_a_stranger_node_exit_2(
    pve: PveLab,
) -> None:
    token = pve.running.password
    cases = {
        "refused the credentials of root@pam!rollup": {"rollup_api_password": "not-the-token"},
        "its TLS certificate is not trusted": {"drop": ("rollup_ca_file",)},
    }
    for expected, change in cases.items():
        inventory = pve.write_inventory(**change)  # type: ignore[arg-type]
        shown = pve.rollup("plan", str(inventory))
        assert shown.returncode == 2, shown.stderr
        lines = shown.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], shown.stderr
        assert token not in shown.stderr and "Traceback" not in shown.stderr
    data = pve.inventory.read_text().replace("    h3:\n", "    pve9:\n", 1)
    stranger = pve.dir / "stranger.yml"
    stranger.write_text(data)
    shown = pve.rollup("plan", str(stranger))
    assert shown.returncode == 2, shown.stderr
    assert "pve9 is not among its nodes (h1, h2, h3)" in shown.stderr, shown.stderr


def test_a_controller_killed_while_the_api_node_reboots_resumes_with_nothing_lost(
    pve: PveLab,
) -> None:
    before = pve.placement()
    child = pve.start_rollup("run", str(pve.inventory), "--yes", "--no-tui", "--json")
    assert child.stdout is not None
    read_events(
        child.stdout,
        lambda e: e["kind"] == "host-state" and e["host_name"] == "h1"
        and e["state"] == "rebooting",
    )  # fmt: skip
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # rollup_api_url is h1's, and h1 may still be down: the resume asks another node.
    resumed = pve.rollup("resume", "--yes", "--no-tui")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert all(updates == [] for updates in pve.pending().values())
    assert pve.in_maintenance() == set() and not pve.noout()
    assert pve.placement() == before
