"""`rollup plan`, `run`, `resume`, `status` and `report` on a Proxmox VE lab, end to end.

The real command against the lab's PVE API (HTTPS, API token, the lab's CA) and its
nodes' sshd (ha-manager, apt through playbooks/proxmox-update.yml, boot ids). What the
run did is checked through proxmoxer: nothing pending on any node, no node left in
maintenance, Ceph's noout as it was, every guest back on its node.
"""

from __future__ import annotations

import json

from tests.proxmox.conftest import PveLab


def test_a_run_patches_every_node_and_leaves_the_cluster_as_it_found_it(pve: PveLab) -> None:
    before = pve.placement()
    pending = pve.pending()
    assert any(pending.values()), "the lab starts with updates pending"
    plan = pve.rollup("plan", str(pve.inventory), "--format", "json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["pool"]["driver"] == "proxmox"
    to_patch = {s["host"]["name"] for batch in planned["batches"] for s in batch["steps"]}
    assert to_patch == {node for node, updates in pending.items() if updates}

    run = pve.rollup("run", str(pve.inventory), "--yes", "--no-tui")
    assert run.returncode == 0, run.stderr + run.stdout
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


def test_a_failed_patch_pauses_with_apts_words_and_resume_finishes(pve: PveLab) -> None:
    pve.api().cluster.ceph.flags("noout").put(value=1)  # set by its admin: it stays
    pve.set_faults({"hosts": {"h2": {"fail_patch": True}}})
    run = pve.rollup("run", str(pve.inventory), "--yes", "--no-tui")
    assert run.returncode == 5, run.stderr + run.stdout
    paused = json.loads(pve.rollup("status", "--json").stdout)
    failed = {h["name"]: h for h in paused["hosts"]}["h2"]
    assert failed["state"] == "failed"
    assert "at task 'Upgrade the packages'" in failed["detail"], failed
    assert "E: lab fault fail-patch" in failed["detail"], failed
    # Paused at the failed host: it stays out of placement until someone looks.
    assert pve.in_maintenance() == {"h2"}

    pve.set_faults({})
    resumed = pve.rollup("resume", "--yes", "--no-tui")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert all(updates == [] for updates in pve.pending().values())
    assert pve.in_maintenance() == set()
    assert pve.noout(), "noout was set before the run: it is left set"
