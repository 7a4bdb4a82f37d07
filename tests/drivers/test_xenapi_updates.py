"""What a XenServer / XCP-ng pool has pending, and installing it, through the XenAPI driver.

Parsing from recorded answers (XCP-ng's updater.py, XenServer 8's /updates), then the
driver against the lab of each flavor over real HTTP. Lab pools on 127.S.45.x.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rollup.drivers import Connection, Follow, with_updates
from rollup.drivers.xenapi.driver import XenApiDriver
from rollup.drivers.xenapi.install import livepatch_failures
from rollup.drivers.xenapi.updates import parse_check_update, parse_updates
from rollup.errors import DriverError
from rollup.lab.faults import Faults, HostFaults
from rollup.model import Update
from tests import loopback
from tests.drivers.test_xenapi_lab import FAST as LAB_TIMING
from tests.served_pools import PASSWORD, Served, ServedPools

FIXTURES = Path(__file__).parent / "fixtures"
PREFIX = loopback.prefix(45)
FAST = dataclasses.replace(LAB_TIMING, busy_seconds=5.0, busy_delay=0.05)


def test_an_updater_answer_becomes_packages_that_ask_for_a_reboot():
    pending = parse_check_update((FIXTURES / "updater_check_update.json").read_text())
    assert pending.updates[0] == Update(
        name="kernel",
        version="4.19.19",
        release="8.0.37.2.xcpng8.3",
        summary="The Linux kernel",
        size=32505856,
    )
    assert [u.size for u in pending.updates] == [32505856, 5242880, 0]
    assert pending.guidance == ("reboot_host",) and pending.reboot
    assert parse_check_update("[]").updates == () and parse_check_update("[]").guidance == ()
    with pytest.raises(DriverError, match="no JSON list"):
        parse_check_update("<html>")


def test_a_xenserver_updates_answer_becomes_advisories_guidances_and_the_hash():
    data = json.loads((FIXTURES / "xenserver_updates.json").read_text())
    found = parse_updates(data, {"OpaqueRef:2c4fea8a-master": "m", "OpaqueRef:5a1b-member": "a"})
    assert found.hash == "c891dd78d9e8a0f33bc7b3af4e1eb2c3"
    assert set(found.hosts) == {"m", "a"}
    master, member = found.hosts["m"], found.hosts["a"]
    assert [(u.name, u.severity, u.summary) for u in master.updates] == [
        ("XS8-2024-0042", "High", "kernel security update"),
        ("XS8-2024-0043", "None", "toolstack bug fixes"),
    ]
    assert master.guidance == ("reboot_host",) and master.reboot and master.evacuate
    assert master.packages[0] == "kernel-4.19.19-8.0.38.xs8.x86_64"
    # A livepatch: no mandatory guidance, a reboot only if the livepatch fails.
    assert member.guidance == () and not member.evacuate
    assert member.recommended == ("reboot_host_on_livepatch_failure",)
    assert member.updates[0].livepatch


def test_a_pool_from_before_december_2023_says_recommended_guidance_for_what_is_mandatory():
    # xapi before the guidance split sent one list per host (repository_helpers.ml then).
    data = {
        "hosts": [
            {
                "ref": "OpaqueRef:old",
                "recommended-guidance": ["RebootHost"],
                "RPMS": ["kernel-4.19.19-8.0.30.xs8.x86_64"],
                "updates": ["XS8-2023-0101"],
            }
        ],
        "updates": [{"id": "XS8-2023-0101", "summary": "kernel", "severity": "High"}],
        "hash": "0" * 64,
    }
    found = parse_updates(data, {"OpaqueRef:old": "h"}).hosts["h"]
    assert found.guidance == ("reboot_host",) and found.reboot and found.evacuate


def test_apply_updates_answers_name_each_failed_livepatch():
    # A task's result is an XML-RPC <value> fragment: [[APPLY_LIVEPATCH_FAILED, lp], ...].
    failed = (
        "<value><array><data><value><array><data>"
        "<value>APPLY_LIVEPATCH_FAILED</value><value>kernel livepatch 4.19.19-9</value>"
        "</data></array></value></data></array></value>"
    )
    assert livepatch_failures(failed) == ("APPLY_LIVEPATCH_FAILED kernel livepatch 4.19.19-9",)
    assert livepatch_failures("<value><array><data/></array></value>") == ()
    assert livepatch_failures("") == ()


class Lab:
    """A served pool and the XenAPI driver connected to it."""

    def __init__(self, served: Served) -> None:
        self.pool, self.server = served.pool, served.server
        self.driver = XenApiDriver(Connection(self.server.url, "root", PASSWORD), FAST)


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    pools = ServedPools(PREFIX, seed=5, speed=500.0)
    made: list[Lab] = []

    def lab(*args: Any, **options: Any) -> Lab:
        made.append(Lab(pools.make(*args, **options)))
        return made[-1]

    yield lab
    for each in made:
        each.driver.close()
    pools.close()


def empty(lab: Lab, name: str) -> str:
    """Shut down what cannot move and evacuate the host, as a rollout's first steps do."""
    pool = lab.driver.snapshot()
    host = next(h for h in pool.hosts if h.name == name)
    lab.driver.disable(host.id)
    for vm in pool.resident(host.id):
        if vm.blockers:
            lab.driver.shutdown_vm(vm.id)
        else:
            dest = next(h for h in pool.hosts if h.id != host.id and h.memory_free > vm.memory)
            lab.driver.migrate(vm.id, dest.id)
            pool = lab.driver.snapshot()
    return host.id


def test_xcp_ng_hosts_say_what_they_lack_and_install_it_through_the_updater(make_lab):
    lab = make_lab(faults=Faults(hosts={"h1": HostFaults(yum_busy=2)}))
    pool = with_updates(lab.driver.snapshot(), lab.driver.pending_updates())
    assert pool.flavor == "xcp-ng" and pool.updates_hash == ""
    pending = {h.name: h.pending for h in pool.hosts}
    assert pending["h4"] is not None and pending["h4"].updates == ()
    assert pending["h1"] is not None and pending["h1"].guidance == ("reboot_host",)
    h1 = next(h for h in pool.hosts if h.name == "h1")
    assert h1.pending_guidances == ()
    # Another yum holds yum's own lock twice: yum waits for it (the plugin is not busy).
    assert lab.pool.hosts[lab.pool.host_named("h1").ref].machine.faults.yum_busy == 2
    output = lab.driver.install_updates(h1.id)
    assert "Complete!" in output
    assert (
        output.count("Another app is currently holding the yum lock; waiting for it to exit...")
        == 2
    )
    after = lab.driver.snapshot().host(h1.id)
    assert float(after.patched_at) > float(after.boot_mark)
    # XCP-ng keeps no guidances: rollup says what Xen Orchestra shows, a reboot due.
    assert after.pending_guidances == ("reboot_host",)
    assert lab.driver.pending_updates([h1.id]).hosts[h1.id].updates == ()


def test_xenserver_hosts_are_read_in_one_request_and_patched_with_the_hash(make_lab):
    lab = make_lab(
        "xenserver", "8.4.0", faults=Faults(hosts={"h2": HostFaults(apply_in_progress=1)})
    )
    found = lab.driver.pending_updates()
    pool = with_updates(lab.driver.snapshot(), found)
    assert pool.flavor == "xenserver" and len(pool.updates_hash) == 64
    h2 = next(h for h in pool.hosts if h.name == "h2")
    assert h2.pending is not None and h2.pending.updates and h2.pending.packages
    host = empty(lab, "h2")
    with pytest.raises(DriverError) as stale:
        lab.driver.install_updates(host, (), "0" * 64)
    assert stale.value.code == "UPDATEINFO_HASH_MISMATCH"
    assert "published since" in str(stale.value)
    # Another update of the pool in progress (the fault, once) is waited out.
    lab.driver.install_updates(host, (), found.hash)
    after = lab.driver.snapshot().host(host)
    assert after.pending_guidances == ("reboot_host",)
    assert lab.driver.pending_updates([host]).hosts[host].updates == ()


def test_a_toolstack_restart_is_waited_for_like_a_reboot(make_lab):
    lab = make_lab("xenserver", "8.4.0", up_to_date=True)
    lab.pool.repository.publish(["xapi"], "8.4")
    assert lab.driver.pending_updates().hosts[lab.driver.snapshot().hosts[2].id].updates == ()
    # rollup_sync: the pool syncs before the pending updates are first read.
    synced = XenApiDriver(lab.driver.api.connection, FAST, {"rollup_sync": True})
    found = synced.pending_updates()
    synced.close()
    h3 = next(h for h in lab.driver.snapshot().hosts if h.name == "h3")
    assert found.hosts[h3.id].guidance == ("restart_toolstack",)
    assert not found.hosts[h3.id].evacuate  # the toolstack restarts under running VMs
    lab.driver.install_updates(h3.id, (), found.hash)
    assert lab.driver.snapshot().host(h3.id).pending_guidances == ("restart_toolstack",)
    back = lab.driver.restart_toolstack(h3.id, timeout=20)
    assert back.pending_guidances == () and back.boot_mark == h3.boot_mark
    assert float(back.agent_start_time) > float(h3.agent_start_time)


def test_a_pool_without_an_update_service_cannot_tell(make_lab):
    lab = make_lab("xenserver", "8.2.1")
    assert lab.driver.pending_updates().hosts == {}
    host = lab.driver.snapshot().hosts[0]
    with pytest.raises(DriverError, match="set rollup_update: playbook"):
        lab.driver.install_updates(host.id)


def test_planned_packages_are_installed_one_updater_call_each_and_exactly_those(make_lab):
    lab = make_lab()
    h1 = next(h for h in lab.driver.snapshot().hosts if h.name == "h1")
    before = lab.driver.pending_updates([h1.id]).hosts[h1.id].updates
    assert len(before) >= 3
    chosen = tuple(u.label for u in before[:2])
    lab.driver.install_updates(h1.id, chosen)
    after = lab.driver.pending_updates([h1.id]).hosts[h1.id].updates
    assert [u.label for u in after] == [u.label for u in before[2:]]


def test_a_check_and_a_second_install_during_an_install_wait_for_it_and_say_so():
    # At speed 20 the install lasts seconds, long enough to ask while it runs.
    pools = ServedPools(PREFIX, seed=5, speed=20.0)
    try:
        lab = Lab(pools.make())
        h1 = next(h for h in lab.driver.snapshot().hosts if h.name == "h1")
        ref = lab.pool.host_named("h1").ref
        assert lab.driver.pending_updates([h1.id]).hosts[h1.id].updates
        said: list[str] = []
        first = threading.Thread(target=lab.driver.install_updates, args=(h1.id,))
        first.start()
        deadline = time.monotonic() + 10
        while lab.pool.plugin_operations.get(ref) != "update":
            assert time.monotonic() < deadline, "the install never started"
            time.sleep(0.01)
        # A second install is told "Update already in progress" and waits it out; a
        # check is told the plugin is busy and waits too: it then finds nothing pending.
        output = lab.driver.install_updates(h1.id, follow=Follow(60.0, said.append))
        assert "No packages marked for update" in output
        assert said[0] == "host h1: Update already in progress"
        assert lab.driver.pending_updates([h1.id]).hosts[h1.id].updates == ()
        first.join(timeout=30)
        lab.driver.close()
    finally:
        pools.close()
