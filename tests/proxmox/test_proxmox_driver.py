"""The Proxmox driver against the lab cluster: what a run relies on, call by call.

The checks that need no whole run: a node whose API goes away while another answers,
maintenance mode through ha-manager, a failed migration's task log as evidence, the run
lock on the cluster file system, Ceph's noout restored as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from rollup.drivers import Connection, InventoryHost
from rollup.drivers.proxmox.driver import ProxmoxDriver
from rollup.errors import LockHeld, MigrationRefused
from rollup.model import Lock
from tests.proxmox.conftest import PveLab


def driver_for(pve: PveLab) -> ProxmoxDriver:
    lab = pve.running
    connection = Connection(lab.url, lab.user, lab.password, ca_file=lab.ca_file)
    hosts = [
        InventoryHost(name=name, pool_host_name=name, address=remote.address, remote=remote)
        for name, remote in lab.remote_hosts().items()
    ]
    return ProxmoxDriver(connection, hosts, "lab", {})


@pytest.fixture
def driver(pve: PveLab) -> Iterator[ProxmoxDriver]:
    found = driver_for(pve)
    try:
        yield found
    finally:
        found.close()


def test_a_node_in_maintenance_is_a_disabled_host_and_survives_its_reboot(
    pve: PveLab, driver: ProxmoxDriver
) -> None:
    pool = driver.snapshot()
    assert pool.master is None and pool.driver == "proxmox"
    assert all(h.enabled and h.live and h.boot_mark for h in pool.hosts)
    h3 = pool.host("h3")
    for vm in pool.resident("h3"):
        if vm.blockers:
            driver.shutdown_vm(vm.id)
            continue
        now = driver.snapshot(blockers_for=())
        dest = next(h.id for h in now.hosts if h.id != "h3" and h.memory_free > vm.memory)
        driver.migrate(vm.id, dest)
    driver.disable("h3")
    assert pve.in_maintenance() == {"h3"}
    assert not driver.snapshot().host("h3").enabled
    # A boot whose services take a while to start after SSH answers (1/6 of 600 s, half
    # a second at the lab's speed): rollup waits for the cluster to count it online.
    pve.running.pool.reboot_seconds = 600.0
    driver.reboot("h3")
    back = driver.wait_back("h3", h3.boot_mark, timeout=60)
    assert back.boot_mark != h3.boot_mark and back.live
    # Back means booted (the lab's pool has started it): not a node still starting its
    # services, which the cluster does not count online and which takes no guest yet.
    assert pve.running.pool.host_named("h3").phase == "up"
    assert not back.enabled, "a node stays in maintenance until rollup ends it"
    driver.enable("h3")
    assert pve.in_maintenance() == set() and driver.snapshot().host("h3").enabled
    # Out of maintenance means ready: a guest moves there at once (a run's restore step).
    guest = next(vm for vm in driver.snapshot().vms if vm.running and not vm.blockers)
    driver.migrate(guest.id, "h3")
    assert driver.snapshot().vm(guest.id).host == "h3"


def test_the_api_node_rebooting_leaves_the_others_to_answer(
    pve: PveLab, driver: ProxmoxDriver
) -> None:
    pool = driver.snapshot()
    for vm in pool.resident("h1"):
        driver.shutdown_vm(vm.id)
    driver.disable("h1")
    driver.reboot("h1")
    deadline = time.monotonic() + 30
    while pve.running.pool.host_named("h1").live:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # rollup_api_url is h1's: h2 answers now.
    down = driver.snapshot()
    assert not down.host("h1").live and down.host("h2").live
    assert driver.wait_back("h1", pool.host("h1").boot_mark, timeout=60).live


def test_a_failed_migration_carries_its_task_log(pve: PveLab, driver: ProxmoxDriver) -> None:
    pool = driver.snapshot()
    vm = next(vm for vm in pool.vms if vm.running and vm.movable and vm.host == "h1")
    dest = next(h.id for h in pool.hosts if h.id != "h1" and h.memory_free > vm.memory)
    pve.set_faults({"vms": {vm.name: {"fail_migration": 1}}})
    with pytest.raises(MigrationRefused) as refused:
        driver.migrate(vm.id, dest)
    assert refused.value.code == "TASK_FAILED"
    assert refused.value.output[0].startswith(f"starting migration of VM {vm.id}")
    assert "TASK ERROR" in refused.value.output[-1]
    assert driver.snapshot().vm(vm.id).host == "h1", "it stays where it was"
    driver.migrate(vm.id, dest)  # the fault was for one migration
    assert driver.snapshot().vm(vm.id).host == dest


def test_the_run_lock_is_one_for_the_cluster_whichever_node_answers(
    pve: PveLab, driver: ProxmoxDriver
) -> None:
    now = time.time()
    ours = Lock("run-1", "controller-a", 1, now, now + 600)
    driver.lock(ours)
    other = driver_for(pve)
    try:
        assert other.snapshot().lock == ours
        with pytest.raises(LockHeld):
            other.lock(Lock("run-2", "controller-b", 2, now, now + 600))
        # /etc/pve is one file system: the lock is seen the same from every node.
        texts = {
            (pve.running.machines[name].root / "etc/pve/rollup/lock").read_text()
            for name in ("h1", "h2", "h3")
        }
        assert len(texts) == 1
    finally:
        other.close()
    driver.unlock("run-1")
    assert driver.snapshot().lock is None


def test_noout_is_set_for_the_run_and_restored_as_it_was(
    pve: PveLab, driver: ProxmoxDriver
) -> None:
    state = driver.pause_ha()
    assert pve.noout() and state.paused.startswith("Ceph's noout flag")
    driver.restore_ha(state)
    assert not pve.noout()
    pve.api().cluster.ceph.flags("noout").put(value=1)
    kept = driver.pause_ha()
    assert kept.paused == ""
    driver.restore_ha(kept)
    assert pve.noout(), "set by its admin before: left set"


def test_a_user_and_password_work_and_an_unreachable_url_leaves_the_nodes_to_answer(
    pve: PveLab,
) -> None:
    lab = pve.running
    hosts = [
        InventoryHost(name=name, pool_host_name=name, address=remote.address, remote=remote)
        for name, remote in lab.remote_hosts().items()
    ]
    # A ticket login (root@pam and its password), through a URL no node answers on.
    nowhere = f"https://{hosts[0].address.rsplit('.', 1)[0]}.250:{lab.server.port}"
    connection = Connection(nowhere, "root@pam", lab.server.password, ca_file=lab.ca_file)
    driver = ProxmoxDriver(connection, hosts, "lab", {"rollup_proxmox_noout": False})
    try:
        pool = driver.snapshot()
        assert {h.name for h in pool.hosts} == {"h1", "h2", "h3"}
        assert driver.pause_ha().detail == () and not pve.noout(), "noout left alone"
        vm = next(vm for vm in pool.vms if vm.running and vm.movable and vm.host == "h2")
        dest = next(h.id for h in pool.hosts if h.id != "h2" and h.memory_free > vm.memory)
        seen: list[float] = []
        driver.migrate(vm.id, dest, seen.append)
        # Progress from the task log's "transferred X MiB of Y GiB VM-state" lines.
        assert seen and all(0 < f <= 1 for f in seen) and seen == sorted(seen)
    finally:
        driver.close()
