"""The XenAPI driver against the lab's XenAPI server, over real HTTP with the official client.

Lab pools here live on 127.S.40.x (tests/loopback.py) (other test files use other ranges).
"""

import logging
import time

import pytest

from rollup.drivers import Connection, HaState
from rollup.drivers.registry import connect
from rollup.drivers.xenapi.driver import Timing, XenApiDriver
from rollup.errors import (
    EXIT_BAD_INPUT,
    EXIT_REFUSED,
    DriverError,
    HostTimeout,
    LockHeld,
    MigrationRefused,
    PoolUnreachable,
    TransientDriverError,
)
from rollup.lab.faults import ApiDrop, Faults, HostFaults, VMFaults
from rollup.lab.xapi.pool import LabPool
from rollup.lab.xapi.server import XapiServer
from rollup.model import Lock
from tests import loopback

PREFIX = loopback.prefix(40)
PASSWORD = "s3cret-lab-pw"
FAST = Timing(
    call_timeout=5.0,
    retry_seconds=2.0,
    backoff_start=0.05,
    backoff_cap=0.3,
    event_timeout=1.0,
    poll_interval=0.1,
    shutdown_timeout=2.0,
    enable_retry_seconds=5.0,
)


@pytest.fixture
def lab():
    pool = LabPool.generate(hosts=3, vms=12, seed=7, address_prefix=PREFIX, speed=200)
    server = XapiServer(pool, user="root", password=PASSWORD)
    server.start()
    yield pool, server
    server.stop()
    pool.close()


@pytest.fixture
def driver(lab):
    _, server = lab
    driver = XenApiDriver(Connection(server.url, "root", PASSWORD), FAST)
    yield driver
    driver.close()


def running_movable(pool, driver):
    """A running, unpinned VM and another enabled host it fits on."""
    snapshot = driver.snapshot()
    for vm in snapshot.vms:
        if vm.running and vm.movable:
            for host in snapshot.hosts:
                if host.id != vm.host and host.memory_free > vm.memory:
                    return vm, host
    raise AssertionError("lab pool has no movable VM")


# -- reading -------------------------------------------------------------------------


def test_snapshot_matches_the_lab_pool(lab, driver):
    pool, _ = lab
    snapshot = driver.snapshot()
    assert snapshot.id == pool.uuid
    assert snapshot.name == pool.name
    assert snapshot.master == pool.hosts[pool.master].uuid
    assert [h.name for h in snapshot.hosts] == ["h1", "h2", "h3"]
    for host in snapshot.hosts:
        sim = pool.host_named(host.name)
        assert host.id == sim.uuid
        assert host.address == sim.address
        assert host.memory_total == sim.memory_total
        assert host.capacity == pool.capacity(sim.ref)
        assert host.memory_free == pool.memory_free(sim.ref)
        assert host.version == sim.version
        assert (host.enabled, host.live, host.is_master) == (True, True, sim.ref == pool.master)
        assert host.boot_mark == sim.other_config["boot_time"]
    guests = [vm for vm in pool.vms.values() if not vm.is_control_domain]
    assert {vm.id for vm in snapshot.vms} == {vm.uuid for vm in guests}
    for vm in snapshot.vms:
        sim = pool.vm_named(vm.id)
        assert vm.memory == sim.memory + sim.memory_overhead
        assert vm.power_state == sim.power_state
        expected_host = pool.hosts[sim.resident_on].uuid if sim.resident_on in pool.hosts else None
        assert vm.host == expected_host


def test_snapshot_reports_pinned_vms_with_reasons(lab, driver):
    pool, _ = lab
    snapshot = driver.snapshot()
    pinned = {vm.uuid: vm for vm in pool.vms.values() if vm.pin and vm.power_state == "Running"}
    assert pinned, "the seed should give at least one pinned running VM"
    for vm in snapshot.vms:
        if vm.id in pinned:
            (blocker,) = vm.blockers
            assert blocker.kind == pinned[vm.id].pin
            host_name = pool.hosts[pinned[vm.id].resident_on].name
            assert host_name in blocker.reason
            if blocker.kind == "local-sr":
                assert f"'Local storage on {host_name}'" in blocker.reason
        else:
            assert vm.movable, vm


def test_snapshot_of_a_large_pool_sees_every_host_and_vm():
    # How fast it is belongs to bench/; here: nothing is lost at 64 hosts x 2,000 VMs.
    pool = LabPool.generate(hosts=64, vms=2000, seed=3, address_prefix=PREFIX, speed=200)
    with XapiServer(pool, user="root", password=PASSWORD) as server:
        driver = XenApiDriver(Connection(server.url, "root", PASSWORD), FAST)
        try:
            snapshot = driver.snapshot()
        finally:
            driver.close()
    pool.close()
    assert (len(snapshot.hosts), len(snapshot.vms)) == (64, 2000)


# -- connecting ----------------------------------------------------------------------


def test_wrong_password_is_refused_with_one_line_and_no_secret(lab):
    _, server = lab
    with pytest.raises(PoolUnreachable) as caught:
        XenApiDriver(Connection(server.url, "root", "wrong-pw-123"), FAST)
    assert str(caught.value) == (
        f"pool {server.url} refused the credentials for user root: check rollup_api_user / "
        "rollup_api_password (or ROLLUP_API_USER / ROLLUP_API_PASSWORD)"
    )
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert "wrong-pw-123" not in repr(caught.value)


def test_unreachable_pool_names_the_url_and_the_fix():
    url = f"http://{loopback.address(40, 250)}:9"
    with pytest.raises(PoolUnreachable) as caught:
        XenApiDriver(Connection(url, "root", PASSWORD), FAST)
    message = str(caught.value)
    assert message.startswith(f"pool {url} is unreachable (connection refused)")
    assert "rollup_api_url" in message
    assert caught.value.exit_code == EXIT_BAD_INPUT


def test_registered_under_xenapi_and_follows_host_is_slave(lab):
    pool, server = lab
    member = next(ref for ref in pool.hosts if ref != pool.master)
    driver = connect("xenapi", Connection(server.url_for(member), "root", PASSWORD))
    try:
        assert isinstance(driver, XenApiDriver)
        assert driver.api.url.rstrip("/") == server.url
        assert driver.snapshot().master == pool.hosts[pool.master].uuid
    finally:
        driver.close()


def test_password_never_in_logs(lab, caplog):
    _, server = lab
    caplog.set_level(logging.DEBUG)
    driver = XenApiDriver(Connection(server.url, "root", PASSWORD), FAST)
    driver.snapshot()
    driver.close()
    assert PASSWORD not in caplog.text


# -- hosts ---------------------------------------------------------------------------


def test_disable_then_enable_a_host(lab, driver):
    pool, _ = lab
    h2 = pool.host_named("h2")
    driver.disable(h2.uuid)
    assert not h2.enabled
    driver.disable(h2.uuid)  # idempotent
    driver.enable(h2.uuid)
    assert h2.enabled


def test_reboot_of_an_enabled_host_is_refused(lab, driver):
    pool, _ = lab
    with pytest.raises(DriverError) as caught:
        driver.reboot(pool.host_named("h2").uuid)
    assert caught.value.code == "HOST_NOT_DISABLED"
    assert str(caught.value) == (
        "could not reboot host h2: it is still enabled (HOST_NOT_DISABLED); "
        "disable and evacuate it first"
    )


def test_member_reboot_wait_back_returns_the_new_boot(lab, driver):
    pool, _ = lab
    h3 = driver.snapshot().host(pool.host_named("h3").uuid)
    driver.disable(h3.id)
    driver.reboot(h3.id)
    back = driver.wait_back(h3.id, h3.boot_mark, timeout=15)
    assert float(back.boot_mark) > float(h3.boot_mark)
    assert (back.live, back.enabled) == (True, True)


def test_master_reboot_wait_back_survives_the_api_dropping(lab, driver, caplog):
    pool, _ = lab
    master = driver.snapshot().host(pool.hosts[pool.master].uuid)
    caplog.set_level(logging.DEBUG, logger="rollup.drivers.xenapi")
    driver.disable(master.id)
    driver.reboot(master.id)
    back = driver.wait_back(master.id, master.boot_mark, timeout=20)
    assert back.is_master
    assert float(back.boot_mark) > float(master.boot_mark)
    assert (back.live, back.enabled) == (True, True)
    assert "API unreachable" in caplog.text or "lost the connection" in caplog.text
    driver.snapshot()  # the driver works again after the reconnect


def test_wait_back_times_out_on_a_host_that_never_returns(lab, driver):
    pool, _ = lab
    pool.set_faults(Faults(hosts={"h2": HostFaults(no_return=True)}))
    h2 = driver.snapshot().host(pool.host_named("h2").uuid)
    driver.disable(h2.id)
    driver.reboot(h2.id)
    with pytest.raises(HostTimeout) as caught:
        driver.wait_back(h2.id, h2.boot_mark, timeout=1.5)
    assert str(caught.value).startswith("host h2 did not come back within 1.5s (last seen: ")
    assert "live False" in str(caught.value)
    # It gave up on a host that really is still down, not on one that was coming back.
    sim = pool.host_named("h2")
    assert (sim.held_down, sim.live, sim.enabled) == (True, False, False)
    assert sim.other_config["boot_time"] == h2.boot_mark, "no new boot"


# -- VMs -----------------------------------------------------------------------------


def test_migrate_reports_progress_and_the_vm_lands(lab, driver):
    pool, _ = lab
    vm, dest = running_movable(pool, driver)
    seen: list[float] = []
    driver.migrate(vm.id, dest.id, seen.append)
    assert pool.vm_named(vm.id).resident_on == pool.host_named(dest.id).ref
    assert seen[-1] == 1.0
    assert seen == sorted(seen)
    assert not pool.tasks, "the migration task is destroyed afterwards"


def test_migration_to_a_disabled_host_is_refused_with_its_code(lab, driver):
    pool, _ = lab
    vm, dest = running_movable(pool, driver)
    driver.disable(dest.id)
    with pytest.raises(MigrationRefused) as caught:
        driver.migrate(vm.id, dest.id)
    assert caught.value.code == "HOST_DISABLED"
    assert (caught.value.vm, caught.value.dest) == (vm.id, dest.id)
    assert str(caught.value) == (
        f"VM {vm.name} cannot move to {dest.name}: HOST_DISABLED host {dest.name} is disabled"
    )


def test_migration_without_room_says_how_much_memory(lab, driver):
    pool, _ = lab
    snapshot = driver.snapshot()
    vm = max((v for v in snapshot.vms if v.running and v.movable), key=lambda v: v.memory)
    dest = next(h for h in snapshot.hosts if h.id != vm.host)
    sim_dest = pool.host_named(dest.id)
    free = pool.memory_free(sim_dest.ref)
    sim_dest.memory_total -= max(0, free - vm.memory // 2)  # a smaller host: no room for it
    with pytest.raises(MigrationRefused) as caught:
        driver.migrate(vm.id, dest.id)
    assert caught.value.code == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert "needed" in str(caught.value) and "GiB" in str(caught.value)


def test_failed_migration_task_becomes_migration_refused(lab, driver):
    pool, _ = lab
    vm, dest = running_movable(pool, driver)
    pool.set_faults(Faults(vms={vm.name: VMFaults(fail_migration=1)}))
    with pytest.raises(MigrationRefused) as caught:
        driver.migrate(vm.id, dest.id)
    assert caught.value.code == "VM_MIGRATE_FAILED"
    assert pool.vm_named(vm.id).resident_on != pool.host_named(dest.id).ref
    assert not pool.tasks


def test_shutdown_then_start_on_a_host(lab, driver):
    pool, _ = lab
    vm, _ = running_movable(pool, driver)
    driver.shutdown_vm(vm.id)
    assert pool.vm_named(vm.id).power_state == "Halted"
    driver.shutdown_vm(vm.id)  # already halted: nothing to do
    driver.start_vm(vm.id, vm.host)
    assert pool.vm_named(vm.id).power_state == "Running"
    assert pool.vm_named(vm.id).resident_on == pool.host_named(vm.host).ref


# -- run lock ------------------------------------------------------------------------


def a_lock(run_id="run-1", expires_in=3600.0, pid=101, controller="ops-a"):
    now = time.time()
    return Lock(run_id, controller, pid, now - 10, now + expires_in)


def test_lock_taken_then_a_second_run_is_refused_naming_the_owner(lab, driver):
    driver.lock(a_lock("run-1"))
    assert driver.snapshot().lock.run_id == "run-1"
    with pytest.raises(LockHeld) as caught:
        driver.lock(a_lock("run-2", controller="ops-b", pid=202))
    message = str(caught.value)
    assert "run run-1 on ops-a (pid 101, started " in message
    assert "--break-lock" not in message
    assert caught.value.exit_code == EXIT_REFUSED


def test_same_run_takes_its_own_lock_again_on_resume(lab, driver):
    driver.lock(a_lock("run-1", expires_in=60))
    driver.lock(a_lock("run-1", expires_in=3600))
    assert driver.snapshot().lock.expires > time.time() + 3000


def test_stale_lock_is_broken_only_with_break_stale(lab, driver):
    driver.lock(a_lock("run-old", expires_in=-60))
    with pytest.raises(LockHeld, match=r"expired at .*rerun with --break-lock"):
        driver.lock(a_lock("run-new"))
    driver.lock(a_lock("run-new"), break_stale=True)
    assert driver.snapshot().lock.run_id == "run-new"


def test_unlock_leaves_other_runs_locks_alone(lab, driver):
    driver.lock(a_lock("run-1"))
    driver.unlock("run-2")
    assert driver.snapshot().lock.run_id == "run-1"
    driver.unlock("run-1")
    assert driver.snapshot().lock is None
    driver.unlock("run-1")  # nothing to release: fine


def test_refresh_extends_our_lock_and_fails_once_it_is_lost(lab, driver):
    lock = a_lock("run-1", expires_in=60)
    driver.lock(lock)
    longer = a_lock("run-1", expires_in=7200)
    driver.refresh_lock(longer)
    assert driver.snapshot().lock.expires == pytest.approx(longer.expires)
    driver.unlock("run-1")
    driver.lock(a_lock("run-2"))
    with pytest.raises(LockHeld, match="run-1 lost its lock"):
        driver.refresh_lock(longer)


# -- HA ------------------------------------------------------------------------------


def test_ha_paused_and_restored(lab, driver):
    pool, _ = lab
    pool.set_ha(True)
    state = driver.pause_ha()
    assert state.enabled
    assert pool.ha_enabled is False
    driver.restore_ha(state)
    assert pool.ha_enabled is True


def test_ha_off_stays_off(lab, driver):
    pool, _ = lab
    state = driver.pause_ha()
    assert state == HaState(enabled=False)
    driver.restore_ha(state)
    assert pool.ha_enabled is False


# -- transient failures --------------------------------------------------------------


def test_calls_ride_out_a_short_master_api_drop(lab, driver):
    pool, _ = lab
    driver.snapshot()
    pool.set_faults(Faults(master_api_drop=ApiDrop(seconds=100)))  # 0.5 s at speed 200
    assert not pool.api_up(pool.master)
    assert len(driver.snapshot().hosts) == 3


def test_a_pool_that_stays_away_surfaces_as_transient(lab, driver):
    pool, server = lab
    h2 = pool.host_named("h2")
    server.stop()
    with pytest.raises(TransientDriverError, match=r"could not find host .*lost the connection"):
        driver.disable(h2.uuid)
    assert h2.enabled, "nothing reached the pool"
    server.start()
    driver.disable(h2.uuid)  # the same driver works once the pool answers again
    assert not h2.enabled


def test_migration_falls_back_to_polling_when_event_from_fails(lab, driver, caplog):
    pool, _ = lab
    real_call = driver.api.call

    def call_without_events(what, method, *args, **kwargs):
        if method == "event.from":
            return real_call(what, "event.nonexistent", *args, **kwargs)
        return real_call(what, method, *args, **kwargs)

    driver.api.call = call_without_events
    vm, dest = running_movable(pool, driver)
    seen: list[float] = []
    driver.migrate(vm.id, dest.id, seen.append)
    assert pool.vm_named(vm.id).resident_on == pool.host_named(dest.id).ref
    assert seen[-1] == 1.0
    assert "polling the task instead" in caplog.text
