"""XCP-ng installs as long as real ones, through the CLI: the updater plugin's yum runs for
minutes and holds the plugin's lock meanwhile (xcp-ng-xapi-plugins updater.py).

Labs on 127.S.210-214.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import XenAPI

from rollup.drivers.xenapi.session import Timing
from tests import loopback
from tests.rollout.conftest import start_lab
from tests.rollout.reports import valid_events
from tests.updates.test_update_runs import assert_nothing_left, publish, read


def test_an_install_longer_than_a_calls_socket_timeout_is_followed_to_its_end(tmp_path: Path):
    # At speed 1 the lab's clock is the real one: two packages take yum 65 s to install,
    # longer than one XenAPI call may wait for its answer.
    lab = start_lab(
        tmp_path, hosts=1, vms=0, speed=1.0, network=loopback.network(210),
        release=None, update="xapi", up_to_date=True,
    )  # fmt: skip
    try:
        lab.running.pool.reboot_seconds = 3.0
        publish(lab, "--kind", "kernel", "--kind", "userspace")
        assert Timing().call_timeout < 65
        result = lab.rollup("run", str(lab.inventory), "--yes", "--no-tui", "--json", timeout=400)
        assert result.returncode == 0, result.stderr
        events = valid_events(result.stdout)
        said = [e["text"] for e in events if e["kind"] == "activity" and e["host_name"] == "h1"]
        # Progress while yum runs, every 15 s, in the log as in the events.
        assert said[:4] == [f"yum update: running for {s}" for s in ("15s", "30s", "45s", "1m 00s")]
        assert "h1       patching: yum update: running for 1m 00s" in result.stderr
        after, _ = read(lab)
        assert_nothing_left(after)
    finally:
        lab.running.stop()


def test_a_plan_made_while_a_host_installs_waits_for_the_install_and_says_so(tmp_path: Path):
    lab = start_lab(
        tmp_path, hosts=2, vms=4, speed=20.0, network=loopback.network(211),
        release=None, update="xapi",
    )  # fmt: skip
    try:
        session = XenAPI.Session(lab.running.url)
        session.xenapi.login_with_password(lab.running.user, lab.running.password, "", "tests")
        h1 = session.xenapi.host.get_by_name_label("h1")[0]
        # An admin's own install (Xen Orchestra's "Install patches") is running on h1.
        task = session.xenapi.Async.host.call_plugin(h1, "updater.py", "update", {})
        deadline = time.monotonic() + 10
        while lab.running.pool.plugin_operations.get(h1) != "update":
            assert time.monotonic() < deadline, "the install never started"
            time.sleep(0.01)
        planned = lab.rollup("plan", str(lab.inventory), "--format", "json")
        assert planned.returncode == 0, planned.stderr
        assert (
            "host h1: The updater plugin is busy (current operation: update); waiting for it"
            in planned.stderr
        )
        assert session.xenapi.task.get_status(task) == "success"
        document = json.loads(planned.stdout)
        # It waited for the install, so it saw what the install left: nothing.
        assert [(s["host"]["name"], s["reason"]) for s in document["skipped"]] == [
            ("h1", "nothing pending"),
            ("h2", "nothing pending"),
        ]
        session.xenapi.session.logout()
    finally:
        lab.running.stop()


def test_two_hosts_of_one_xenserver_batch_apply_one_after_another(tmp_path: Path):
    # At speed 20 an apply lasts seconds, evacuations of small VMs a fraction of one: the
    # batch's two hosts want to apply at the same time, and xapi lets one at a time.
    lab = start_lab(
        tmp_path, hosts=4, vms=6, speed=20.0, network=loopback.network(213),
        release=None, update="xapi", flavor="xenserver", fill=(0.2, 0.3),
    )  # fmt: skip
    try:
        inventory = lab.write_inventory(rollup_max_parallel_hosts=2)
        planned = lab.rollup("plan", str(inventory), "--format", "json")
        assert planned.returncode == 0, planned.stderr
        document = json.loads(planned.stdout)
        pair = next(b for b in document["batches"] if len(b["steps"]) == 2)
        patch = document["policy"]["patch_seconds"]
        assert pair["estimate_seconds"] == max(s["estimate_seconds"] for s in pair["steps"]) + patch
        assert "their installs go one at a time" in document["concurrency"]["reason"]
        result = lab.rollup("run", str(inventory), "--yes", "--no-tui", "--json")
        assert result.returncode == 0, result.stderr
        events = valid_events(result.stdout)
        names = {s["host"]["name"] for s in pair["steps"]}
        waited = [
            e["host_name"]
            for e in events
            if e["kind"] == "activity" and "waiting for the pool's apply_updates" in e["text"]
        ]
        assert len(waited) == 1 and set(waited) < names
        after, _ = read(lab)
        assert_nothing_left(after)
    finally:
        lab.running.stop()


def test_a_xenserver_pool_without_an_update_repository_gets_one_line_naming_the_fix(
    tmp_path: Path,
):
    lab = start_lab(
        tmp_path, hosts=2, vms=2, network=loopback.network(214), release=None,
        update="xapi", flavor="xenserver",
    )  # fmt: skip
    try:
        session = XenAPI.Session(lab.running.url)
        session.xenapi.login_with_password(lab.running.user, lab.running.password, "", "tests")
        pool_ref = session.xenapi.pool.get_all()[0]
        # As a pool looks right after an upgrade from 8.2: no repository configured.
        session.xenapi.pool.set_repositories(pool_ref, [])
        for command in ("plan", "run"):
            args = (command, str(lab.inventory)) + (
                ("--yes", "--no-tui") if command == "run" else ()
            )
            done = lab.rollup(*args)
            assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
            assert "no update repository enabled" in done.stderr
            assert "configure and sync the pool's repositories" in done.stderr
        for sync in (False, True):
            planned = lab.rollup("plan", str(lab.write_inventory(rollup_sync=sync)))
            assert planned.returncode == 2 and "no update repository" in planned.stderr
        assert all(h.enabled for h in lab.snapshot().hosts), "nothing was touched"
        session.xenapi.session.logout()
    finally:
        lab.running.stop()
