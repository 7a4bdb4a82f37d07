"""A major upgrade (XCP-ng 8.2 → 8.3) through the network installer, end to end through
the CLI: the installer checked on every host before anything moves, the master first,
the pool in rolling-upgrade mode meanwhile, the new release's patches in the same turn,
and the failures XenCenter users know. Labs on 127.S.210-215.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollup.drivers import Connection, with_updates
from rollup.drivers.xenapi.driver import XenApiDriver
from rollup.model import Pool
from tests import loopback
from tests.rollout.conftest import Lab, start_lab
from tests.rollout.reports import valid_events

_networks = itertools.cycle(range(210, 216))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    started = start_lab(
        tmp_path, hosts=3, vms=9, network=loopback.network(next(_networks)),
        release="8.2.1", update="xapi", fill=(0.3, 0.4),
    )  # fmt: skip
    yield started
    started.running.stop()


def read(lab: Lab) -> Pool:
    running = lab.running
    driver = XenApiDriver(Connection(running.url, running.user, running.password))
    try:
        return with_updates(driver.snapshot(), driver.pending_updates())
    finally:
        driver.close()


def test_a_major_upgrade_installs_the_new_release_then_its_patches_master_first(lab: Lab):
    lab.running.pool.set_ha(True)
    before = read(lab)
    group: dict[str, Any] = json.loads(
        lab.rollup("plan", str(lab.inventory), "--format", "json").stdout
    )
    checks = {c["name"]: c for c in group["checks"]}
    assert checks["installer"]["status"] == "pass"
    assert lab.running.installer_url in checks["installer"]["reason"]
    steps = [s for b in group["batches"] for s in b["steps"]]
    assert [(s["host"]["name"], s["upgrade"], s["version_after"]) for s in steps] == [
        ("h1", True, "8.3.0"),
        ("h2", True, "8.3.0"),
        ("h3", True, "8.3.0"),
    ]

    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui", "--json")
    assert result.returncode == 0, result.stderr
    events = valid_events(result.stdout)
    # Per host: the installer, a reboot into 8.3.0, its updates, another reboot.
    h2 = [e["state"] for e in events if e["kind"] == "host-state" and e["host_name"] == "h2"]
    assert h2.count("patching") == 2 and h2.count("rebooting") == 2
    assert "set to boot the installer of 8.3.0" in result.stderr
    after = read(lab)
    assert {h.name: h.version for h in after.hosts} == {h.name: "8.3.0" for h in after.hosts}
    assert all(
        h.build_number != b.build_number for h, b in zip(after.hosts, before.hosts, strict=True)
    )
    assert all(h.pending is not None and h.pending.updates == () for h in after.hosts)
    assert not after.rolling_upgrade and after.ha_enabled, "HA back once versions match"
    assert {vm.name: vm.host for vm in after.vms if vm.running} == {
        vm.name: vm.host for vm in before.vms if vm.running
    }


def test_a_bad_installer_url_refuses_the_plan_before_anything_changes(lab: Lab):
    before = read(lab)
    wrong = lab.running.installer_url.replace("8.3.0", "8.9.9")
    inventory = lab.write_inventory(rollup_installer_url=wrong)
    result = lab.rollup("run", str(inventory), "--yes", "--no-tui")
    assert result.returncode == 3, result.stderr
    assert (
        f"h1 cannot boot the installer: {wrong} is not an installer repository the host can"
        " read (INVALID_URL)"
    ) in result.stderr.replace("\n", " ")
    after = read(lab)
    assert (after.hosts, after.vms) == (before.hosts, before.vms)
    # The right installer, but a host its testSafe2Upgrade says is not safe to upgrade.
    lab.set_faults({"hosts": {"h2": {"unsafe_to_upgrade": "not_enough_space"}}})
    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
    assert result.returncode == 3, result.stderr
    assert (
        "h2 cannot boot the installer: its local storage has not enough free space for the upgrade"
    ) in result.stderr.replace("\n", " ")
    after = read(lab)
    assert (after.hosts, after.vms) == (before.hosts, before.vms)


def test_a_host_that_boots_back_on_its_old_release_pauses_and_resume_upgrades_it(lab: Lab):
    lab.set_faults({"hosts": {"h2": {"return_old_version": True}}})
    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
    assert result.returncode == 5, result.stderr
    assert "h2 came back at version 8.2.1, expected 8.3.0" in result.stderr
    paused = read(lab)
    assert paused.rolling_upgrade, "h1 runs 8.3.0, h2 and h3 8.2.1"
    lab.set_faults({})
    resumed = lab.rollup("resume", "--yes", "--no-tui")
    assert resumed.returncode == 0, resumed.stderr
    after = read(lab)
    assert {h.version for h in after.hosts} == {"8.3.0"} and not after.rolling_upgrade
