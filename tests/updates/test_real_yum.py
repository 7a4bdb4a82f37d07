"""The lab's XCP-ng hosts run real dnf and rpm, and the pool's own calls go through them.

A lab started where this machine has rpm, dnf and createrepo_c (CI installs them) gives
every XCP-ng / XenServer host its own rpm database and dnf, installing real RPMs from
the lab's mirror. The updater plugin's `update` runs that yum with the plugin's own
command line, so what the plugin does with its arguments, the lock and the cache is
dnf's own: these tests fail if any part of it is a stand-in again.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from rollup.lab import dnf_host, rpm_builds
from rollup.lab.hosts import LabMachine, stop_stale_daemons
from rollup.lab.packages import Build
from tests import loopback
from tests.installed import ROLLUP
from tests.rollout.conftest import Lab, env, start_lab

_networks = itertools.cycle(range(230, 240))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    missing = rpm_builds.missing_tools()
    assert not missing, f"{', '.join(missing)} missing: see .ci/run's apt-get install"
    started = start_lab(
        tmp_path, hosts=3, vms=6, ssh=False, network=loopback.network(next(_networks)),
        release=None, update="xapi",
    )  # fmt: skip
    try:
        yield started
    finally:
        started.running.stop()


class Plugin:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.session = XenAPI.Session(lab.running.url)
        self.session.xenapi.login_with_password(lab.running.user, lab.running.password, "", "tests")
        self.x: Any = self.session.xenapi

    def host_ref(self, name: str) -> str:
        return str(self.x.host.get_by_name_label(name)[0])

    def call(self, host: str, fn: str, args: dict[str, str]) -> Any:
        return json.loads(self.x.host.call_plugin(self.host_ref(host), "updater.py", fn, args))

    def close(self) -> None:
        self.session.xenapi.session.logout()


@pytest.fixture
def plugin(lab: Lab) -> Iterator[Plugin]:
    made = Plugin(lab)
    yield made
    made.close()


def machine(lab: Lab, name: str) -> LabMachine:
    return lab.running.machines[name]


def rpm_q(lab: Lab, name: str, *packages: str) -> list[str]:
    """What the host's own rpm database says, asked of the real rpm."""
    root = machine(lab, name).root
    done = dnf_host.rpm(root, "-q", *packages)
    return done.stdout.split()


def pending(lab: Lab, name: str) -> list[Build]:
    host = lab.running.pool.host_named(name)
    return lab.running.pool.repository.pending("8.3", host.machine.packages() or {})


def test_every_xcp_ng_host_has_its_own_rpm_database_and_the_pool_reads_it(lab: Lab):
    for name in ("h1", "h2", "h3"):
        assert machine(lab, name).disk.real
        listed = rpm_q(lab, name, "kernel", "xapi-core", "curl")
        assert len(listed) >= 3 and all(line.endswith(".x86_64") for line in listed)
    # The pool's view of what is pending is the rpm database's.
    before = {b.name for b in pending(lab, "h1")}
    assert before and "kernel" in before
    kernel = next(b for b in pending(lab, "h1") if b.name == "kernel")
    assert f"{kernel.rpm}" not in rpm_q(lab, "h1", "kernel")


def test_the_plugins_update_is_real_dnf_and_one_argument_with_two_packages_matches_none(
    lab: Lab, plugin: Plugin
):
    first, second = pending(lab, "h1")[:2]
    both = f"{first.nvr} {second.nvr}"
    with pytest.raises(XenAPI.Failure) as info:
        plugin.call("h1", "update", {"packages": both})
    code, command, output, _ = info.value.details
    # dnf 4 exits 1 where XCP-ng 8's yum 3 exits 0 (README: what the lab cannot imitate).
    assert code == "1" and command.endswith("failed with code: 1")
    assert f"No match for argument: {both}" in output
    assert [b.name for b in pending(lab, "h1")][:2] == [first.name, second.name]
    # One package per call installs exactly it, from the mirror, into the host's database.
    answer = plugin.call("h1", "update", {"packages": first.nvr})
    assert answer["returncode"] == 0 and "Complete!" in answer["stdout"]
    assert f"{first.rpm}.rpm" in lab.running.mirror.served
    assert first.rpm in rpm_q(lab, "h1", first.name)
    assert first.name not in {b.name for b in pending(lab, "h1")}
    assert second.name in {b.name for b in pending(lab, "h1")}


def test_a_check_during_a_long_install_is_busy_and_another_dnf_holding_the_lock_is_waited_for(
    lab: Lab, plugin: Plugin
):
    lab.set_faults({"hosts": {"h2": {"yum_busy": 2}}})
    task = plugin.x.Async.host.call_plugin(plugin.host_ref("h2"), "updater.py", "update", {})
    busy: list[str] = []
    while not busy and plugin.x.task.get_status(task) == "pending":
        try:
            plugin.call("h2", "check_update", {})
        except XenAPI.Failure as failure:
            busy = failure.details
    assert busy[1] == "The updater plugin is busy (current operation: update)"
    answer = json.loads(_task_result(plugin, task))
    # dnf/lock.py: the lock named a live process, dnf said so and waited for it to go.
    assert "Waiting for process with pid" in answer["stdout"] + answer["stderr"]
    assert pending(lab, "h2") == []
    assert plugin.call("h2", "check_update", {}) == []


def _task_result(plugin: Plugin, task: str) -> str:
    deadline = time.monotonic() + 60
    while plugin.x.task.get_status(task) == "pending":
        assert time.monotonic() < deadline, "the install did not end"
        time.sleep(0.05)
    assert plugin.x.task.get_status(task) == "success", plugin.x.task.get_error_info(task)
    result = str(plugin.x.task.get_result(task))
    # XenAPI wraps a plugin's answer in <value>...</value>.
    return result.removeprefix("<value>").removesuffix("</value>")


def test_a_publish_reaches_the_hosts_dnf_while_the_lab_runs(lab: Lab):
    done = subprocess.run(
        [ROLLUP, "lab", "publish", "--dir", str(lab.dir), "--kind", "userspace"],
        capture_output=True, text=True, timeout=60, env=env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    newest = lab.running.pool.repository
    newest.reload()
    curl = newest.latest("8.3")["curl"]
    h3 = machine(lab, "h3")  # the lab's up-to-date host: only the publish is pending
    ran = h3.run_yum(["check-update"])
    assert ran is not None and ran.returncode == 100, ran
    listed = [line.split() for line in ran.stdout.splitlines() if line.endswith("xcp-ng-updates")]
    assert listed == [["curl.x86_64", f"{curl.version}-{curl.release}", "xcp-ng-updates"]]


def test_without_dnf_the_main_job_runs_on_the_labs_stand_in_yum(tmp_path: Path):
    """A fresh machine without dnf, rpm and createrepo-c (what ROLLUP_LAB_PACKAGES=shim
    stands for): the README's first command still patches the lab, with the stand-in."""
    from tests.rollout.test_lab_resume import lab_inventory

    faults = tmp_path / "faults.yml"
    faults.write_text("{}\n")
    inventory = lab_inventory(tmp_path, faults)
    state = tmp_path / "state"
    try:
        done = subprocess.run(
            [ROLLUP, "run", str(inventory), "--yes", "--no-tui", "--state-dir", str(state)],
            capture_output=True, text=True, timeout=240,
            env={**env(), rpm_builds.PACKAGES_ENV: "shim"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        roots = sorted((state / "labs" / "lab" / "hosts").glob("*/root"))
        assert len(roots) == 4
        assert not any(dnf_host.is_real(root) for root in roots)
        assert "3 hosts patched" in done.stderr
    finally:
        stop_stale_daemons(state / "labs" / "lab")
