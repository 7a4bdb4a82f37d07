"""Patching real-shaped pools end to end through the CLI: XCP-ng through its updater plugin,
XenServer 8 through /updates and apply_updates (with its livepatches and toolstack
restarts in place), the Ansible playbook over SSH, and updates published mid-run.

Each test runs the installed `rollup` against a lab in this process and checks the pool
afterwards with the XenAPI driver: nothing pending on any host, every guidance acted on,
every VM running where it started. Labs on 127.S.200-209.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import XenAPI

from rollup import bundled
from rollup.drivers import Connection, PoolUpdates, with_updates
from rollup.drivers.xenapi.driver import XenApiDriver
from rollup.model import Pool
from rollup.output.report import plan_schema
from tests import loopback
from tests.installed import ROLLUP
from tests.rollout.conftest import Lab, env, read_events, start_lab
from tests.rollout.reports import valid_events

_networks = itertools.cycle(range(200, 210))


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Any]:
    labs: list[Lab] = []

    def make(**scenario: Any) -> Lab:
        lab = start_lab(
            tmp_path / f"lab{len(labs)}",
            hosts=4,
            vms=16,
            network=loopback.network(next(_networks)),
            **{"release": None, "update": "xapi", **scenario},
        )
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.running.stop()


def read(lab: Lab) -> tuple[Pool, PoolUpdates]:
    running = lab.running
    driver = XenApiDriver(Connection(running.url, running.user, running.password))
    try:
        found = driver.pending_updates()
        return with_updates(driver.snapshot(), found), found
    finally:
        driver.close()


def homes(pool: Pool) -> dict[str, str | None]:
    return {vm.name: vm.host for vm in pool.vms if vm.running}


def assert_nothing_left(after: Pool) -> None:
    assert {h.name: h.pending.updates if h.pending else None for h in after.hosts} == {
        h.name: () for h in after.hosts
    }
    assert {h.name: h.pending_guidances for h in after.hosts} == {h.name: () for h in after.hosts}
    assert all(h.enabled and h.live for h in after.hosts)


def publish(lab: Lab, *args: str) -> str:
    done = subprocess.run(
        [ROLLUP, "lab", "publish", "--dir", str(lab.dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def sync(lab: Lab) -> str:
    """pool.sync_updates by another client, as a XenServer pool's scheduled sync does."""
    session = XenAPI.Session(lab.running.url)
    session.xenapi.login_with_password(lab.running.user, lab.running.password, "", "tests")
    try:
        pool_ref = session.xenapi.pool.get_all()[0]
        return str(session.xenapi.pool.sync_updates(pool_ref, False, "", ""))
    finally:
        session.xenapi.session.logout()


def test_an_xcp_ng_pool_is_patched_through_its_updater_and_ends_with_nothing_pending(make_lab):
    lab = make_lab()
    before, _ = read(lab)
    # Another yum holds h2's lock for its next two attempts: rollup's calls to the
    # updater plugin wait it out, as Xen Orchestra's do.
    lab.set_faults({"hosts": {"h2": {"yum_busy": 2}}})
    planned = lab.rollup("plan", str(lab.inventory), "--format", "json")
    assert planned.returncode == 0, planned.stderr
    document = json.loads(planned.stdout)
    jsonschema.validate(document, plan_schema())
    steps = {s["host"]["name"]: s for b in document["batches"] for s in b["steps"]}
    assert set(steps) == {"h1", "h2", "h3"}
    assert [s["reason"] for s in document["skipped"]] == ["nothing pending"]
    expected = {h.name: [u.name for u in h.pending.updates] for h in before.hosts if h.pending}
    assert {name: [u["name"] for u in s["pending_updates"]] for name, s in steps.items()} == {
        name: names for name, names in expected.items() if names
    }
    assert all(s["reboot"] and s["guidance"] == ["reboot_host"] for s in steps.values())

    # Migrations over the pool's migration network, by name (rollup_migration_network).
    inventory = lab.write_inventory(rollup_migration_network="Migration")
    result = lab.rollup("run", str(inventory), "--yes", "--no-tui", "--json")
    assert result.returncode == 0, result.stderr
    events = valid_events(result.stdout)
    networks = {n.name: n.migrations for n in lab.running.pool.networks.values()}
    assert networks["Migration"] == events[-1]["migrations"] > 0
    assert networks["Pool-wide network associated with eth0"] == 0
    patched = [e["host_name"] for e in events if e["kind"] == "action" and e["state"] == "patching"]
    assert patched == ["h1", "h2", "h3"]
    # Downloads happened while every host still ran its VMs: before the first evacuation.
    assert document["prestage"]["method"] == "ssh"
    texts = [(i, e["text"]) for i, e in enumerate(events) if e["kind"] == "message"]
    staged = [i for i, text in texts if ": pre-staged: " in text]
    evacuating = [i for i, e in enumerate(events) if e.get("state") == "evacuating"]
    assert len(staged) == 3 and max(staged) < min(evacuating)
    after, _ = read(lab)
    assert_nothing_left(after)
    boots = {h.name: (h.boot_mark, h.patched_at) for h in before.hosts}
    for host in after.hosts:
        if host.name == "h4":
            assert (host.boot_mark, host.patched_at) == boots["h4"], "h4 was left alone"
        else:
            # Installed then rebooted: Xen Orchestra would show no reboot due.
            assert float(boots[host.name][0]) < float(host.patched_at) < float(host.boot_mark)
    # VMs' auto power-on was off while hosts rebooted (no halted VM started), and is on
    # again: every VM that ran runs where it did, and only those.
    assert homes(after) == homes(before)
    assert lab.running.pool.other_config["auto_poweron"] == "true"


def test_a_xenserver_pool_is_patched_with_apply_updates_and_its_guidances_acted_on(make_lab):
    lab = make_lab(flavor="xenserver")
    # Another update of the pool is in progress at h2's first apply_updates: waited out.
    lab.set_faults({"hosts": {"h2": {"apply_in_progress": 1}}})
    # Xen Orchestra's choice of migration network for the pool is honoured.
    pool = lab.running.pool
    chosen = next(n for n in pool.networks.values() if n.name == "Migration")
    pool.add_to_other_config("xo:migrationNetwork", chosen.uuid)
    before, found = read(lab)
    assert before.flavor == "xenserver" and len(found.hash) == 64
    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
    assert result.returncode == 0, result.stderr
    assert "reboot required (reboot_host)" in result.stderr
    assert chosen.migrations > 0
    after, _ = read(lab)
    assert_nothing_left(after)
    assert homes(after) == homes(before)
    bad = lab.rollup("plan", str(lab.write_inventory(rollup_migration_network="storage")))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "rollup_migration_network 'storage' names no network of the pool" in bad.stderr


def test_livepatches_and_a_toolstack_update_are_installed_without_moving_a_vm(make_lab):
    lab = make_lab(flavor="xenserver", up_to_date=True)
    assert "(livepatch)" in publish(lab, "--kind", "kernel", "--livepatch")
    publish(lab, "--kind", "xapi")
    before, _ = read(lab)
    # The pool has not synced since: without rollup_sync there is nothing to do, as the
    # plan says, naming the sync it is as of and the way out.
    assert {h.name: h.pending.updates for h in before.hosts if h.pending} == {
        h.name: () for h in before.hosts
    }
    planned = lab.rollup("plan", str(lab.inventory), "--format", "json")
    reason = next(
        c["reason"] for c in json.loads(planned.stdout)["checks"] if c["name"] == "updates"
    )
    assert reason.startswith("every host has nothing pending (as of the pool's last sync, ")
    assert reason.endswith("; rollup_sync: true syncs first): nothing to do")
    inventory = lab.write_inventory(rollup_sync=True)
    result = lab.rollup("run", str(inventory), "--yes", "--no-tui", "--json")
    assert result.returncode == 0, result.stderr
    finished = valid_events(result.stdout)[-1]
    assert finished["kind"] == "run-finished" and finished["migrations"] == 0
    after, _ = read(lab)
    assert_nothing_left(after)
    assert homes(after) == homes(before)
    for old, new in zip(before.hosts, after.hosts, strict=True):
        assert new.boot_mark == old.boot_mark, f"{new.name} was not rebooted"
        assert float(new.agent_start_time) > float(old.agent_start_time), "toolstack restarted"


def test_the_ansible_playbook_path_installs_from_the_same_repository_over_ssh(make_lab):
    lab = make_lab()
    before, _ = read(lab)
    inventory = lab.write_inventory(
        rollup_update="playbook", rollup_playbook=bundled.playbook("xcp-ng-update.yml")
    )
    result = lab.rollup("run", str(inventory), "--yes", "--no-tui")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("reboot required") == 3
    # Every host downloaded all it installs before the first evacuation, so its yum then
    # installed from its cache while the host was out of service (tests/lab/test_yum.py).
    log = result.stderr
    assert log.index("pre-staged 3 of 3 hosts") < log.index("evacuating")
    for host in before.hosts:
        # The lab's hosts run real dnf: it sums up what it fetched for the transaction.
        pending = len(host.pending.updates) if host.pending else 0
        said = f"{host.name}: pre-staged: {pending} package{'s' if pending > 1 else ''} in its"
        assert not pending or f"{said} cache" in log
    after, _ = read(lab)
    assert_nothing_left(after)
    assert homes(after) == homes(before)


def approve_after_publishing(
    lab: Lab, inventory: Path, *publish_args: str, then_sync: bool = False
) -> Any:
    """Start a run that waits for approval, publish updates meanwhile (and sync the pool,
    as a XenServer's scheduled sync would), then approve it."""
    child = lab.start_rollup("run", str(inventory), "--no-tui", "--json")
    assert child.stdout is not None
    gate = lambda e: e["kind"] == "run-state" and e["state"] == "awaiting_approval"  # noqa: E731
    seen = read_events(child.stdout, gate)
    assert seen, child.communicate(timeout=60)[1]
    run_id = seen[-1]["run_id"]
    if publish_args:
        publish(lab, *publish_args)
    if then_sync:
        sync(lab)
    assert lab.rollup("approve", run_id).returncode == 0
    out, err = child.communicate(timeout=240)
    return child.returncode, valid_events(out), err


def test_updates_published_after_planning_are_a_divergence_and_left_for_the_next_run(make_lab):
    lab = make_lab()
    before, _ = read(lab)
    planned = [len(h.pending.updates) for h in before.hosts if h.pending and h.pending.updates]
    code, events, err = approve_after_publishing(lab, lab.inventory, "--kind", "userspace")
    assert code == 0, err
    diverged = [e for e in events if e["kind"] == "divergence"]
    assert [e["host_name"] for e in diverged] == ["h1", "h2", "h3"]
    assert "published since planning (curl-" in diverged[0]["detail"]
    assert "installing what was planned only" in diverged[0]["detail"]
    assert "published since planning left for the next run: curl-" in err
    # XCP-ng's updater takes one package per call: the planned ones went one at a time.
    said = [e["text"] for e in events if e["kind"] == "activity"]
    assert [t for t in said if "one at a time" in t] == [
        f"installing the {n} planned update{'s' * (n != 1)} one at a time, leaving 1 update"
        " published since"
        " planning (rollup_updates: planned)"
        for n in planned
    ]
    after, _ = read(lab)
    assert {h.name: [u.name for u in h.pending.updates] for h in after.hosts if h.pending} == {
        name: ["curl"] for name in ("h1", "h2", "h3", "h4")
    }


def test_a_xenserver_publish_matters_after_a_sync_then_a_stale_plan_fails_safely(make_lab):
    lab = make_lab(flavor="xenserver")
    # Published while the run waits, not synced: the pool knows nothing of it (xapi
    # answers /updates and checks the hash from its last sync). The plan holds.
    code, events, err = approve_after_publishing(lab, lab.inventory, "--kind", "userspace")
    assert code == 0, err
    assert [e for e in events if e["kind"] == "divergence"] == []
    after, _ = read(lab)
    assert_nothing_left(after)
    sync(lab)
    assert {h.name: [u.summary for u in h.pending.updates] for h in read(lab)[0].hosts} == {
        name: ["curl: security fixes"] for name in ("h1", "h2", "h3", "h4")
    }
    # Published and synced while the next run waits (a scheduled sync): the hash changed,
    # so planned fails the host untouched, back in service (apply_updates disabled it).
    code, events, err = approve_after_publishing(
        lab, lab.inventory, "--kind", "xapi", then_sync=True
    )
    assert code == 5, err
    failed = [e for e in events if e["kind"] == "action" and not e["ok"]]
    assert [(e["host_name"], e["state"], e["code"]) for e in failed] == [
        ("h1", "patching", "UPDATEINFO_HASH_MISMATCH")
    ]
    assert "set rollup_updates: latest" in failed[0]["error"]
    assert next(h for h in read(lab)[0].hosts if h.name == "h1").enabled
    latest = lab.write_inventory(rollup_updates="latest")
    resumed = lab.rollup("resume", "--yes", "--no-tui")
    assert resumed.returncode == 5, "a resume keeps the plan's policy: planned"
    # The paused run holds the pool until it is resumed or aborted: a new run with
    # another policy needs the abort first, and nothing stays out of service after it.
    paused = json.loads(lab.rollup("status", "--json").stdout)["run"]
    assert lab.rollup("run", str(latest), "--yes", "--no-tui").returncode == 3
    aborted = lab.rollup("abort", paused)
    assert aborted.returncode == 0 and "stays out of service" not in aborted.stderr
    code, events, err = approve_after_publishing(lab, latest, "--kind", "kernel", then_sync=True)
    assert code == 0, err
    # Every host was planned in place (a curl fix and a toolstack update pending); the
    # kernel published since needs them emptied and rebooted, which they were.
    moved = [
        e["host_name"]
        for e in events
        if e["kind"] == "divergence" and "not patched in place" in e["detail"]
    ]
    assert moved == ["h1", "h2", "h3", "h4"]
    after, _ = read(lab)
    assert_nothing_left(after)


def test_a_failed_livepatch_ends_with_the_host_rebooted(make_lab):
    lab = make_lab(flavor="xenserver", up_to_date=True)
    publish(lab, "--kind", "kernel", "--livepatch")
    lab.set_faults({"hosts": {"h2": {"fail_livepatch": True}}})
    before, _ = read(lab)
    result = lab.rollup("run", str(lab.write_inventory(rollup_sync=True)), "--yes", "--no-tui")
    assert result.returncode == 0, result.stderr
    assert "reboot required (reboot_host_on_livepatch_failure)" in result.stderr
    after, _ = read(lab)
    assert_nothing_left(after)
    rebooted = [
        h.name
        for h, old in zip(after.hosts, before.hosts, strict=True)
        if h.boot_mark != old.boot_mark
    ]
    assert rebooted == ["h2"]
    # Emptied first (it was to be patched in place), its VMs running elsewhere.
    assert "it is emptied and rebooted, not patched in place" in result.stderr
    assert set(homes(after)) == set(homes(before))
    assert "h2" not in set(homes(after).values()) - set(homes(before).values())


def test_a_patch_that_changes_xapis_minor_version_mid_run_completes_with_every_vm_running(
    make_lab,
):
    lab = make_lab(up_to_date=True)
    publish(lab, "--kind", "xapi", "--kind", "kernel", "--minor")
    pool = lab.running.pool
    pool.set_ha(True)  # restored at the end, once every host runs the new xapi
    before, _ = read(lab)
    modes: set[bool] = set()
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            modes.add("rolling_upgrade_in_progress" in dict(pool.other_config))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
    finally:
        watching.set()
        watcher.join()
    assert result.returncode == 0, result.stderr
    # The first patched host ran xapi 25.7 beside 25.6: xapi's rolling-upgrade mode, in
    # which VMs never move to a host with a lower xapi or Xen, and HA cannot be enabled.
    assert modes == {True, False}
    assert "HA restored" in result.stderr
    after, _ = read(lab)
    assert_nothing_left(after)
    assert homes(after) == homes(before)
    assert pool.ha_enabled and "rolling_upgrade_in_progress" not in pool.other_config
    assert {h.xapi_version for h in pool.hosts.values()} == {"25.7"}


def test_vms_whose_updates_ask_for_a_restart_are_listed_then_restarted_when_asked(make_lab):
    lab = make_lab(flavor="xenserver", up_to_date=True)
    publish(lab, "--kind", "firmware")  # guest firmware: every running VM must restart
    sync(lab)
    result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui")
    assert result.returncode == 0, result.stderr
    waiting, _ = read(lab)
    due = sorted(vm.name for vm in waiting.vms if "restart_vm" in vm.pending_guidances)
    assert due == sorted(vm.name for vm in waiting.vms if vm.running)
    assert f"need a restart to use their updates (restart_vm): {', '.join(due)};" in result.stderr
    domids = {vm.uuid: vm.domid for vm in lab.running.pool.vms.values()}
    inventory = lab.write_inventory(rollup_restart_vms=True)
    result = lab.rollup("run", str(inventory), "--yes", "--no-tui")
    assert result.returncode == 0, result.stderr
    after, _ = read(lab)
    assert [vm.name for vm in after.vms if vm.pending_guidances] == []
    assert homes(after) == homes(waiting), "restarted where they ran"
    restarted = {vm.uuid for vm in lab.running.pool.vms.values() if vm.domid != domids[vm.uuid]}
    assert {vm.id for vm in after.vms if vm.name in due} == restarted
