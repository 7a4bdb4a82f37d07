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
