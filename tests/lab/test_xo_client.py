"""Xen Orchestra's own XenAPI connector (npm `xen-api`, pinned in tests/lab/xo) against the lab.

`tests/lab/xo/script.mjs` connects through a pool member's address (so the client must
follow HOST_IS_SLAVE), waits for its objects cache, then drives the pool as XO's rolling
pool update does and prints what it saw as JSON. `.ci/run` installs its node_modules
(`npm ci --prefix tests/lab/xo`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollup.lab.xapi.running import RunningLab
from tests import loopback

XO = Path(__file__).resolve().parent / "xo"
NETWORK = loopback.network(61)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RunningLab]:
    running = RunningLab.start(
        hosts=4,
        vms=24,
        seed=1,
        speed=100.0,
        ssh=False,
        port=0,
        directory=tmp_path / "lab",
        network=NETWORK,
        release="8.2.1",
    )
    try:
        yield running
    finally:
        running.stop()


def _node() -> str:
    node = shutil.which("node")
    assert node, "Node.js is required for this test: install nodejs (20 or newer)"
    assert (XO / "node_modules" / "xen-api").is_dir(), (
        f"xen-api is not installed: run `npm ci --prefix {XO}` (.ci/run does)"
    )
    return node


def test_xen_orchestras_client_connects_caches_and_drives_the_lab(lab: RunningLab) -> None:
    node = _node()
    member = next(ref for ref in lab.pool.hosts if ref != lab.pool.master)
    master_address = lab.pool.hosts[lab.pool.master].address
    done = subprocess.run(
        [node, str(XO / "script.mjs"), lab.server.url_for(member), lab.user, lab.password],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=XO,
        stdin=subprocess.DEVNULL,
    )
    assert done.stdout, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert done.returncode == 0 and report["ok"], (report, done.stderr)
    # The client logs `console.warn` for every failed call it retries: there must be none.
    assert "_watchEvents" not in done.stderr and "Error" not in done.stderr, done.stderr

    assert report["steps"] == [
        "connected",
        "objects fetched",
        "disable/enable",
        "migrated",
        "patched",
        "rebooted",
        "barrier",
        "disconnected",
    ]
    assert report["connected_to"] == master_address  # followed HOST_IS_SLAVE
    assert report["pool"] == lab.pool.name
    assert report["master"] == lab.pool.hosts[lab.pool.master].name
    assert [h["name"] for h in report["hosts"]] == sorted(h.name for h in lab.pool.hosts.values())
    assert all(h["enabled"] and h["live"] for h in report["hosts"])
    assert {h["product_version"] for h in report["hosts"]} == {"8.2.1"}
    assert report["vm_count"] == 24
    guests = [vm for vm in lab.pool.vms.values() if not vm.is_control_domain]
    running = [vm for vm in guests if vm.power_state == "Running"]
    assert report["running_vm_count"] == len(running)
    assert sum(h["resident_vms"] for h in report["hosts"]) == report["running_vm_count"]
    assert {"pool", "host", "host_metrics", "VM"} <= set(report["types"])
    assert report["rolling_upgrade"] is None

    assert report["reboot_enabled_host"] == "HOST_NOT_DISABLED"
    assert report["disabled_seen"] is True and report["enabled_seen"] is True
    migration = report["migration"]
    assert migration["from"] != migration["to"] and migration["result"] == ""
    # The host the VM went to was then evacuated and rebooted: every VM still runs.
    assert [vm for vm in guests if vm.power_state == "Running"] == running
    assert report["reboot"] == {
        "host": migration["to"],
        "went_down": True,
        "agent_start_time_newer": True,
        "enabled": True,
        "live": True,
    }
    # The updater plugin as XO calls it: every host's pending packages, then one host's
    # install through callAsync (the plugin's JSON answer as the task's result).
    pending = report["pending"]
    assert set(pending) == {h.name for h in lab.pool.hosts.values()}
    assert pending["h1"] and "kernel" in pending["h1"] and pending["h4"] == []
    assert report["update"]["returncode"] == 0 and report["update"]["left"] == 0
    patched = lab.pool.host_named(report["update"]["host"])
    assert float(patched.other_config["rpm_patch_installation_time"]) > 0
    assert report["barrier"] is True
    assert {"host", "host_metrics", "VM", "pool"} <= set(report["update_types"])
    assert report["tasks_left"] == 0
    # What XO's client left behind: no task (callAsync destroys its tasks), no barrier key,
    # no session.
    assert lab.pool.tasks == {}
    assert not any(key.startswith("xo:barrier:") for key in lab.pool.other_config)
    assert lab.pool.sessions == {}
