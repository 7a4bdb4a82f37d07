"""`rollup resume` of a run on an in-process lab finds the pool the paused run left.

The lab lives inside each `rollup` process (`rollup_lab` in the inventory): the run that
pauses takes it down with it, and the resume must bring back the same pool, not a fresh
one whose hosts are all at their old version while the journal says some are done.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from rollup import bundled
from rollup.drivers import Connection, PoolUpdates
from rollup.drivers.xenapi.driver import XenApiDriver
from rollup.lab import LabSpec
from rollup.lab.hosts import stop_stale_daemons
from rollup.lab.xapi.running import RunningLab
from rollup.model import Pool
from tests.installed import ROLLUP
from tests.rollout.conftest import env

SPEED = 200.0
TARGET = "8.3.0"


def lab_inventory(tmp_path: Path, faults: Path) -> Path:
    """inventories/lab.yml, faster, with a fault file and an absolute playbook path."""
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "inventories/lab.yml").read_text())
    group = data["all"]["children"]["lab"]["vars"]
    group["rollup_lab"].update(speed=SPEED, faults=str(faults))
    group["rollup_playbook"] = bundled.playbook("lab-patch.yml")
    path = tmp_path / "lab.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rollup(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ROLLUP, *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        env=env(),
    )


def status(state: Path) -> dict[str, Any]:
    shown = rollup(state, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def restored_pool(state: Path) -> tuple[Pool, PoolUpdates]:
    """The in-process lab the last rollup left in `state`, brought back and read."""
    spec = LabSpec(hosts=4, vms=24, seed=1, speed=SPEED, ssh=False)
    lab = RunningLab.start_for(spec, state / "labs" / "lab", restore=True)
    try:
        assert lab.restored
        driver = XenApiDriver(Connection(lab.url, lab.user, lab.password))
        try:
            return driver.snapshot(), driver.pending_updates()
        finally:
            driver.close()
    finally:
        lab.stop()


def test_a_paused_lab_run_resumes_on_the_pool_it_left(tmp_path: Path) -> None:
    faults = tmp_path / "faults.yml"
    faults.write_text(yaml.safe_dump({"hosts": {"h2": {"fail_patch": True}}}))
    inventory = lab_inventory(tmp_path, faults)
    state = tmp_path / "state"

    try:
        run = rollup(state, "run", str(inventory), "--yes", "--no-tui")
        assert run.returncode == 5, run.stderr
        paused = status(state)
        hosts = {host["name"]: host["state"] for host in paused["hosts"]}
        assert hosts["h1"] == "done" and hosts["h2"] == "failed", paused

        faults.write_text("{}\n")
        resumed = rollup(state, "resume", "--yes", "--no-tui")
        assert resumed.returncode == 0, resumed.stderr
        finished = status(state)
        assert finished["state"] == "completed", finished
        # h4 had nothing pending: left out from the start.
        assert {host["name"]: host["state"] for host in finished["hosts"]} == {
            "h1": "done",
            "h2": "done",
            "h3": "done",
            "h4": "skipped",
        }, finished

        # The lab the resume left, brought back once more: every host really patched.
        pool, pending = restored_pool(state)
        assert {h.name: pending.hosts[h.id].updates for h in pool.hosts} == {
            name: () for name in ("h1", "h2", "h3", "h4")
        }
        assert all(host.enabled and host.version == TARGET for host in pool.hosts)
        assert all(host.pending_guidances == () for host in pool.hosts)
    finally:
        # A rollup killed by a timeout leaves its lab's sshd daemons: stop them.
        stop_stale_daemons(state / "labs" / "lab")
