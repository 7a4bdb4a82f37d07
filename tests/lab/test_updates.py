"""The lab's updates as XenAPI clients see them, through the official XenAPI client.

XCP-ng: the updater.py host plugin as Xen Orchestra calls it. XenServer 8: GET /updates
and host.apply_updates with their errors, and the guidances they leave, cleared by
their actions. Pools on 127.S.50.x.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import XenAPI

from rollup.lab.faults import Faults, HostFaults
from tests import loopback
from tests.served_pools import PASSWORD, Served, ServedPools

PREFIX = loopback.prefix(50)


class Lab:
    """A served pool and an admin's XenAPI session to it."""

    def __init__(self, served: Served) -> None:
        self.pool, self.server = served.pool, served.server
        self.session = XenAPI.Session(self.server.url)
        self.session.xenapi.login_with_password("root", PASSWORD, "2.21", "rollup-tests")
        self.x: Any = self.session.xenapi

    def host(self, name: str) -> str:
        return self.x.host.get_by_name_label(name)[0]

    def updates(self, auth: str = "session") -> dict[str, Any]:
        url = f"{self.server.url}/updates"
        headers = {}
        if auth == "session":
            url += f"?session_id={self.session._session}"
        elif auth == "basic":
            pair = f"root:{PASSWORD}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as reply:
            assert reply.headers["Content-Type"] == "application/json"
            return json.loads(reply.read())

    def sync(self) -> str:
        """pool.sync_updates, as an admin or a scheduled sync runs it."""
        pool_ref = self.x.pool.get_all()[0]
        return self.x.pool.sync_updates(pool_ref, False, "", "")

    def evacuate(self, name: str) -> None:
        """Empty the host as an admin would: the VMs that cannot move are shut down."""
        ref = self.host(name)
        for vm in self.x.host.get_vms_which_prevent_evacuation(ref):
            self.x.VM.hard_shutdown(vm)
        self.x.host.disable(ref)
        self.x.host.evacuate(ref)

    def wait(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "the lab did not get there"
            time.sleep(0.02)


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    pools = ServedPools(PREFIX, seed=3, speed=1000.0)
    yield lambda *args, **options: Lab(pools.make(*args, **options))
    pools.close()


def failure(call: Callable[[], object]) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call()
    return info.value.details


def check_update(lab: Lab, name: str) -> list[dict[str, Any]]:
    return json.loads(lab.x.host.call_plugin(lab.host(name), "updater.py", "check_update", {}))


# -- XCP-ng: updater.py ------------------------------------------------------------------


def test_updater_lists_what_each_host_lacks_and_the_last_host_is_up_to_date(make_lab):
    lab = make_lab()
    first = check_update(lab, "h1")
    assert first and {"kernel", "xen-hypervisor", "xapi-core", "qemu"} <= {p["name"] for p in first}
    assert set(first[0]) == {
        "name", "version", "release", "description", "changelog", "url", "size", "license",
    }  # fmt: skip
    assert check_update(lab, "h4") == []


def test_updater_update_installs_them_all_or_the_builds_named(make_lab):
    lab = make_lab()
    pending = check_update(lab, "h1")
    curl = next(p for p in pending if p["name"] == "curl")
    nvr = f"curl-{curl['version']}-{curl['release']}"
    answer = json.loads(
        lab.x.host.call_plugin(lab.host("h1"), "updater.py", "update", {"packages": nvr})
    )
    assert answer["returncode"] == 0 and nvr.replace("curl-", "curl.x86_64 ") in answer["stdout"]
    assert [p["name"] for p in check_update(lab, "h1")] == [
        p["name"] for p in pending if p["name"] != "curl"
    ]
    task = lab.x.Async.host.call_plugin(lab.host("h1"), "updater.py", "update", {})
    lab.wait(lambda: lab.x.task.get_status(task) != "pending")
    assert lab.x.task.get_status(task) == "success"
    assert check_update(lab, "h1") == []
    # Nothing else changed on the host: the client records the time and reboots.
    assert "rpm_patch_installation_time" not in lab.x.host.get_other_config(lab.host("h1"))


def update(lab: Lab, name: str, **args: str) -> dict[str, Any]:
    return json.loads(lab.x.host.call_plugin(lab.host(name), "updater.py", "update", args))


def test_packages_reach_yum_as_one_argument_so_two_named_match_nothing(make_lab):
    # updater.py appends `packages` to yum's command line whole (install_helper).
    lab = make_lab()
    pending = check_update(lab, "h1")
    two = " ".join(f"{p['name']}-{p['version']}-{p['release']}" for p in pending[:2])
    answer = update(lab, "h1", packages=two)
    assert answer["command"][-1] == two and answer["returncode"] == 0
    assert answer["stdout"].splitlines() == [
        f"No Match for argument: {two}",
        "No packages marked for update",
    ]
    assert check_update(lab, "h1") == pending


def test_only_the_repositories_a_host_has_enabled_are_used(make_lab):
    lab = make_lab()
    answer = update(lab, "h1", repos="xcp-ng-testing, xcp-ng-updates")
    assert answer["command"][:5] == [
        "yum", "update", "--disablerepo=*", "--enablerepo=xcp-ng-base,xcp-ng-updates", "-y",
    ]  # fmt: skip
    assert check_update(lab, "h1") == []


def test_the_plugins_own_lock_refuses_a_check_and_a_second_update_while_one_runs():
    # At speed 20 an install lasts seconds: long enough to be caught running.
    pools = ServedPools(PREFIX, seed=3, speed=20.0)
    try:
        lab = Lab(pools.make())
        h1 = lab.host("h1")
        task = lab.x.Async.host.call_plugin(h1, "updater.py", "update", {})
        lab.wait(lambda: lab.pool.plugin_operations.get(h1) == "update")
        busy = failure(lambda: check_update(lab, "h1"))
        assert busy[:3] == ["-1", "The updater plugin is busy (current operation: update)", ""]
        again = failure(lambda: update(lab, "h1"))
        assert again[:3] == ["-1", "Update already in progress", ""]
        assert lab.x.task.get_status(task) == "pending"
        assert lab.x.task.get_progress(task) == 0.0, "a plugin call's task shows no progress"
        lab.wait(lambda: lab.x.task.get_status(task) != "pending", timeout=60)
        assert lab.x.task.get_status(task) == "success"
        assert check_update(lab, "h1") == []
    finally:
        pools.close()


def test_another_yum_holding_yums_lock_is_waited_for_not_an_error(make_lab):
    lab = make_lab(faults=Faults(hosts={"h1": HostFaults(yum_busy=2)}))
    answer = update(lab, "h1")
    assert answer["returncode"] == 0
    assert (
        answer["stderr"].splitlines()
        == ["Another app is currently holding the yum lock; waiting for it to exit..."] * 2
    )
    assert check_update(lab, "h1") == []


def test_a_failing_yum_comes_back_with_its_exit_code_and_output(make_lab):
    lab = make_lab(faults=Faults(hosts={"h1": HostFaults(fail_patch=True)}))
    details = failure(lambda: update(lab, "h1"))
    assert details[0] == "1"
    assert details[1].startswith("Command '['yum', 'update', ") and details[1].endswith(
        "failed with code: 1"
    )
    assert details[2].startswith("stdout: '', stderr: 'Error: lab fault fail_patch")
    assert check_update(lab, "h1"), "nothing was installed"


def test_plugins_and_functions_a_host_lacks_are_refused_by_name(make_lab):
    lab = make_lab()
    h1 = lab.host("h1")
    assert failure(lambda: lab.x.host.call_plugin(h1, "updater.py", "frobnicate", {})) == [
        "UNKNOWN_XENAPI_PLUGIN_FUNCTION",
        "frobnicate",
    ]
    assert failure(lambda: lab.x.host.call_plugin(h1, "nope.py", "x", {})) == [
        "XENAPI_MISSING_PLUGIN",
        "nope.py",
    ]
    xenserver = make_lab("xenserver", "8.4.0")
    assert failure(
        lambda: xenserver.x.host.call_plugin(xenserver.host("h1"), "updater.py", "check_update", {})
    ) == ["XENAPI_MISSING_PLUGIN", "updater.py"]


# -- XenServer 8: /updates, apply_updates, guidances --------------------------------------


def test_the_master_serves_updates_to_a_session_or_basic_auth_and_nobody_else(make_lab):
    lab = make_lab("xenserver", "8.4.0")
    by_session, by_password = lab.updates("session"), lab.updates("basic")
    assert by_session == by_password
    hosts = {lab.x.host.get_name_label(h["ref"]): h for h in by_session["hosts"]}
    assert hosts["h1"]["guidance"]["mandatory"] == ["RebootHost"]
    assert hosts["h1"]["updates"] and all(rpm.endswith(".x86_64") for rpm in hosts["h1"]["RPMS"])
    assert hosts["h4"] == {**hosts["h4"], "updates": [], "RPMS": []}
    ids = {u["id"] for u in by_session["updates"]}
    assert set(hosts["h1"]["updates"]) <= ids and len(by_session["hash"]) == 64
    with pytest.raises(urllib.error.HTTPError) as refused:
        lab.updates("none")
    assert refused.value.code == 401


def test_apply_updates_refuses_with_xapis_errors_after_disabling_the_host(make_lab):
    lab = make_lab("xenserver", "8.4.0")
    h1, hash_ = lab.host("h1"), lab.updates()["hash"]
    lab.pool.set_ha(True)
    assert failure(lambda: lab.x.host.apply_updates(h1, hash_)) == ["HA_IS_ENABLED"]
    assert lab.x.host.get_enabled(h1), "HA is checked before the host is disabled"
    lab.pool.set_ha(False)
    # xapi_host.ml disables the host first: every later refusal leaves it disabled.
    assert failure(lambda: lab.x.host.apply_updates(h1, hash_)) == [
        "HOST_EVACUATION_IS_REQUIRED",
        h1,
    ]
    assert not lab.x.host.get_enabled(h1)
    lab.x.host.enable(h1)
    lab.evacuate("h1")
    assert failure(lambda: lab.x.host.apply_updates(h1, "stale")) == ["UPDATEINFO_HASH_MISMATCH"]
    lab.pool.set_faults(Faults(hosts={"h1": HostFaults(apply_in_progress=1)}))
    assert failure(lambda: lab.x.host.apply_updates(h1, hash_)) == ["APPLY_UPDATES_IN_PROGRESS"]
    # A publish changes nothing until the pool syncs: then the hash read before is stale.
    lab.pool.repository.publish(["userspace"], "8.4")
    assert lab.updates()["hash"] == hash_
    assert lab.sync() == lab.updates()["hash"] != hash_
    assert failure(lambda: lab.x.host.apply_updates(h1, hash_)) == ["UPDATEINFO_HASH_MISMATCH"]
    assert lab.x.host.apply_updates(h1, lab.updates()["hash"]) == []
    record = lab.x.host.get_record(h1)
    assert record["latest_synced_updates_applied"] == "yes"
    assert record["last_update_hash"] == lab.updates()["hash"]
    assert str(record["last_software_update"]) > "19700101T00:00:00Z"


def test_one_apply_at_a_time_in_the_pool_and_updates_wait_for_it():
    # At speed 20 an apply lasts seconds: long enough to ask while it runs.
    pools = ServedPools(PREFIX, seed=3, speed=20.0)
    try:
        lab = Lab(pools.make("xenserver", "8.4.0"))
        hash_ = lab.updates()["hash"]
        for name in ("h2", "h3"):
            lab.evacuate(name)
        task = lab.x.Async.host.apply_updates(lab.host("h2"), hash_)
        lab.wait(
            lambda: (
                "apply_updates"
                in lab.x.pool.get_record(lab.pool.ref)["current_operations"].values()
            )
        )
        assert failure(lambda: lab.x.host.apply_updates(lab.host("h3"), hash_)) == [
            "APPLY_UPDATES_IN_PROGRESS"
        ]
        # GET /updates is a waiting pool operation: it answers once the apply is done.
        entry = next(h for h in lab.updates()["hosts"] if h["ref"] == lab.host("h2"))
        assert lab.x.task.get_status(task) == "success"
        assert entry["updates"] == []
    finally:
        pools.close()


def test_a_pool_without_a_repository_answers_404_and_refuses_syncs_and_applies(make_lab):
    lab = make_lab("xenserver", "8.4.0")
    hash_ = lab.updates()["hash"]
    pool_ref = lab.x.pool.get_all()[0]
    (repository,) = lab.x.pool.get_repositories(pool_ref)
    assert lab.x.repository.get_hash(repository) == hash_
    lab.x.pool.set_repositories(pool_ref, [])
    with pytest.raises(urllib.error.HTTPError) as missing:
        lab.updates()
    assert missing.value.code == 404
    assert failure(lab.sync) == ["NO_REPOSITORY_ENABLED"]
    lab.evacuate("h2")
    assert failure(lambda: lab.x.host.apply_updates(lab.host("h2"), hash_)) == [
        "NO_REPOSITORY_ENABLED"
    ]
    lab.x.pool.set_repositories(pool_ref, [repository])
    assert lab.updates()["hash"] == hash_


def test_updates_for_some_hosts_only_and_a_bad_ref_is_a_bad_request(make_lab):
    lab = make_lab("xenserver", "8.4.0")
    url = f"{lab.server.url}/updates?session_id={lab.session._session}&host_refs="
    h1, h2 = lab.host("h1"), lab.host("h2")
    with urllib.request.urlopen(url + f"{h1};{h2}") as reply:
        assert {h["ref"] for h in json.loads(reply.read())["hosts"]} == {h1, h2}
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(url + f"{h1};OpaqueRef:nope")
    assert bad.value.code == 400


def test_a_reboot_guidance_blocks_enable_until_the_host_reboots(make_lab):
    lab = make_lab("xenserver", "8.4.0")
    h2 = lab.host("h2")  # a member: the master's reboot would take the API away
    lab.evacuate("h2")
    lab.x.host.apply_updates(h2, lab.updates()["hash"])
    assert lab.x.host.get_pending_guidances(h2) == ["reboot_host"]
    assert failure(lambda: lab.x.host.enable(h2)) == [
        "HOST_PENDING_MANDATORY_GUIDANCE_NOT_EMPTY",
        h2,
    ]
    entry = next(h for h in lab.updates()["hosts"] if h["ref"] == h2)
    assert entry["updates"] == [], "installed: nothing pending any more"
    booted = float(lab.x.host.get_other_config(h2)["boot_time"])
    lab.x.host.reboot(h2)
    lab.wait(lambda: float(lab.x.host.get_other_config(h2)["boot_time"]) > booted)
    lab.wait(lambda: lab.x.host.get_enabled(h2))
    assert lab.x.host.get_pending_guidances(h2) == []


def test_a_toolstack_and_device_model_update_in_place_and_its_guidances(make_lab):
    lab = make_lab("xenserver", "8.4.0", up_to_date=True)
    lab.pool.repository.publish(["xapi"], "8.4")
    lab.pool.repository.publish(["qemu"], "8.4")
    lab.sync()
    entry = next(h for h in lab.updates()["hosts"] if h["ref"] == lab.host("h2"))
    assert entry["guidance"]["mandatory"] == ["RestartToolstack", "RestartDeviceModel"]
    h2 = lab.host("h2")
    pinned = lab.x.host.get_vms_which_prevent_evacuation(h2)
    guests = [
        v
        for v in lab.x.host.get_resident_VMs(h2)
        if not lab.x.VM.get_is_control_domain(v) and v not in pinned
    ]
    assert guests
    assert lab.x.host.apply_updates(h2, lab.updates()["hash"]) == []
    assert lab.x.host.get_pending_guidances(h2) == ["restart_toolstack"]
    assert {tuple(lab.x.VM.get_pending_guidances(v)) for v in guests} == {("restart_device_model",)}
    # A live migration restarts a VM's device model; a toolstack restart the toolstack.
    smallest = min(guests, key=lambda v: int(lab.x.VM.get_memory_static_max(v)))
    roomiest = max(
        (lab.host(name) for name in ("h1", "h3", "h4")),
        key=lambda h: int(lab.x.host_metrics.get_memory_free(lab.x.host.get_metrics(h))),
    )
    lab.x.VM.pool_migrate(smallest, roomiest, {"live": "true"})
    assert lab.x.VM.get_pending_guidances(smallest) == []
    started = float(lab.x.host.get_other_config(h2)["agent_start_time"])
    lab.x.host.restart_agent(h2)

    def restarted() -> bool:
        try:
            return float(lab.x.host.get_other_config(h2)["agent_start_time"]) > started
        except OSError:  # the toolstack is down for a while
            return False

    lab.wait(restarted)
    assert lab.x.host.get_pending_guidances(h2) == []


def test_a_livepatch_needs_no_guidance_and_firmware_asks_every_guest_to_restart(make_lab):
    lab = make_lab("xenserver", "8.4.0", up_to_date=True)
    lab.pool.repository.publish(["kernel"], "8.4", livepatch=True)
    lab.sync()
    entry = next(h for h in lab.updates()["hosts"] if h["ref"] == lab.host("h3"))
    assert entry["guidance"]["mandatory"] == []
    assert entry["guidance"]["recommended"] == ["RebootHostOnLivePatchFailure"]
    assert entry["livepatches"] and entry["livepatches"][0]["component"] == "kernel"
    h3 = lab.host("h3")
    assert lab.x.host.apply_updates(h3, lab.updates()["hash"]) == []
    assert lab.x.host.get_pending_guidances(h3) == []
    assert lab.x.host.get_pending_guidances_recommended(h3) == []
    lab.pool.repository.publish(["firmware"], "8.4")
    lab.sync()
    lab.x.host.apply_updates(h3, lab.updates()["hash"])
    running = [
        ref
        for ref, vm in lab.x.VM.get_all_records().items()
        if vm["power_state"] == "Running" and not vm["is_control_domain"]
    ]
    assert all("restart_vm" in lab.x.VM.get_pending_guidances(ref) for ref in running)


def test_a_failed_livepatch_answers_its_failure_and_recommends_a_reboot(make_lab):
    lab = make_lab(
        "xenserver", "8.4.0", up_to_date=True,
        faults=Faults(hosts={"h3": HostFaults(fail_livepatch=True)}),
    )  # fmt: skip
    lab.pool.repository.publish(["kernel"], "8.4", livepatch=True)
    lab.sync()
    h3 = lab.host("h3")
    failed = lab.x.host.apply_updates(h3, lab.updates()["hash"])
    assert [code for code, _ in failed] == ["APPLY_LIVEPATCH_FAILED"]
    assert lab.x.host.get_pending_guidances(h3) == []
    assert lab.x.host.get_pending_guidances_recommended(h3) == ["reboot_host_on_livepatch_failure"]


def test_with_auto_poweron_a_booting_host_starts_the_vms_that_live_on_it(make_lab):
    lab = make_lab()
    pool = lab.pool
    halted = [
        vm
        for vm in pool.vms.values()
        if vm.power_state == "Halted" and vm.affinity != "OpaqueRef:NULL"
    ]
    assert halted and all(vm.other_config["auto_poweron"] == "true" for vm in halted)
    home = pool.hosts[halted[0].affinity]
    assert home.ref != pool.master, "the seed's halted VM lives on a member"
    pool.add_to_other_config("auto_poweron", "true")
    lab.evacuate(home.name)
    lab.x.host.reboot(home.ref)
    lab.wait(lambda: halted[0].power_state == "Running")
    assert halted[0].resident_on == home.ref
