"""The driver's view of the pool kept current by event.from: as fresh as a full read.

Lab pools here live on 127.S.41.x (tests/loopback.py).
"""

from collections.abc import Iterator

import pytest

from rollup.drivers import Connection
from rollup.drivers.xenapi.driver import Timing, XenApiDriver
from rollup.lab.xapi.pool import LabPool
from rollup.lab.xapi.server import XapiServer
from rollup.model import Pool
from tests import loopback

PREFIX = loopback.prefix(41)
PASSWORD = "view-lab-pw"
FAST = Timing(call_timeout=5.0, retry_seconds=3.0, backoff_start=0.05, backoff_cap=0.3)


@pytest.fixture
def lab() -> Iterator[tuple[LabPool, XapiServer]]:
    pool = LabPool.generate(hosts=3, vms=12, seed=11, address_prefix=PREFIX, speed=500)
    try:
        with XapiServer(pool, user="root", password=PASSWORD) as server:
            yield pool, server
    finally:
        pool.close()


def driver_of(server: XapiServer) -> XenApiDriver:
    return XenApiDriver(Connection(server.url, "root", PASSWORD), FAST)


def fresh_snapshot(server: XapiServer) -> Pool:
    driver = driver_of(server)
    try:
        return driver.snapshot()
    finally:
        driver.close()


def test_changes_made_by_another_client_show_in_the_next_snapshot(lab):
    _, server = lab
    watcher, actor = driver_of(server), driver_of(server)
    try:
        before = watcher.snapshot()
        vm = next(v for v in before.vms if v.running and v.movable)
        dest = next(h for h in before.hosts if h.id != vm.host and h.memory_free > vm.memory)
        other = next(h for h in before.hosts if h.id not in (vm.host, dest.id))
        actor.migrate(vm.id, dest.id, lambda _: None)
        actor.disable(other.id)

        after = watcher.snapshot()
        assert after.vm(vm.id).host == dest.id
        assert not after.host(other.id).enabled
        assert after.host(dest.id).memory_free < before.host(dest.id).memory_free
        # Incremental, and the same as reading everything anew.
        assert after == fresh_snapshot(server)
        assert watcher._view.full_reads == 1
    finally:
        watcher.close()
        actor.close()


def test_a_reboot_of_the_master_is_followed_to_the_end(lab):
    _, server = lab
    driver = driver_of(server)
    try:
        before = driver.snapshot()
        master = before.host(before.master)
        driver.disable(master.id)
        for vm in before.vms:
            if vm.running and vm.host == master.id:
                driver.shutdown_vm(vm.id)
        driver.reboot(master.id)
        back = driver.wait_back(master.id, master.boot_mark, timeout=30)
        driver.enable(master.id)
        after = driver.snapshot()
        assert after.host(master.id).boot_mark == back.boot_mark != master.boot_mark
        assert after.host(master.id).enabled and after.host(master.id).live
        assert after == fresh_snapshot(server)
    finally:
        driver.close()


def test_a_pool_restarted_in_place_is_read_anew_not_from_the_old_view(lab):
    _, server = lab
    driver = driver_of(server)
    try:
        driver.snapshot()
        server.stop()
        # Another xapi at the same address whose event log starts again from nothing,
        # and whose pool differs (a host disabled while we were away).
        restarted = LabPool.generate(hosts=3, vms=12, seed=11, address_prefix=PREFIX, speed=500)
        h3 = restarted.host_named("h3")
        h3.enabled = False
        try:
            with XapiServer(restarted, port=server.port, user="root", password=PASSWORD) as again:
                after = driver.snapshot()
                assert not after.host(h3.uuid).enabled
                assert after == fresh_snapshot(again)
                assert driver._view.full_reads == 2
        finally:
            restarted.close()
    finally:
        driver.close()


def test_a_pool_without_events_is_read_in_full_every_time(lab):
    pool, server = lab
    driver = driver_of(server)
    real_call = driver.api.call

    def call_without_events(what, method, *args, **kwargs):
        if method.startswith("event."):
            return real_call(what, "event.nonexistent", *args, **kwargs)
        return real_call(what, method, *args, **kwargs)

    driver.api.call = call_without_events
    try:
        before = driver.snapshot()
        host = before.hosts[1]
        pool.hosts[pool.host_named(host.name).ref].enabled = False
        assert not driver.snapshot().host(host.id).enabled
        assert driver._view.full_reads == 0  # never built from events
    finally:
        driver.close()
