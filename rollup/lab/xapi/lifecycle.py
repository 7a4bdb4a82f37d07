"""A lab host's life: disable, enable, reboot (down, boot, toolstack start) and API drops.

host.reboot refuses an enabled host; the host goes down GOING_DOWN_SECONDS after the call
returns, leaving any VM still running on it Halted (what a rolling upgrade must avoid);
its machine is powered off. It boots `reboot_seconds` * 5/6 later (plus a `return_late`
fault; never while a `no_return` fault holds it) with the version its machine installed
(or the installer it was prepared for, lab/xapi/installer.py),
and xapi enables it once the toolstack is up, at `reboot_seconds`. While the master is
down, or during a `master_api_drop`, its API listener is closed (lab/xapi.py watches).

host.restart_agent restarts the toolstack only, as xapi does: AGENT_PAUSE_SECONDS after
the call returns the host's API stops answering for AGENT_START_SECONDS; then xapi is
back with a newer `agent_start_time` and the same `boot_time`, its VMs still running,
and the host enabled again (xapi enables a host when it starts, after a reboot or a
toolstack restart alike: a disabled host comes back enabled). The master's sessions do
not survive its toolstack restart.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import TYPE_CHECKING

from rollup.lab.packages import Installed, stream_of
from rollup.lab.xapi import guidances, power, versions
from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.objects import NULL, SimHost

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

GOING_DOWN_SECONDS = 10.0
BOOT_SHARE = 5 / 6  # of reboot_seconds until xapi answers; the rest until it is enabled
AGENT_PAUSE_SECONDS = 10.0  # xapi: "restarts the agent after a 10 second pause"
AGENT_START_SECONDS = 5.0  # toolstack down until it answers again
# The caller's reply must leave before the API closes, whatever the lab's speed.
AGENT_PAUSE_REAL_MIN = 0.05


def disable(pool: LabPool, host_ref: str) -> None:
    with pool.lock:
        host = pool.host(host_ref)
        if not host.live:
            raise XapiFailure("HOST_OFFLINE", host.ref)
        if host.enabled:
            host.enabled = False
            pool.emit(host)


def enable(pool: LabPool, host_ref: str) -> None:
    with pool.lock:
        host = pool.host(host_ref)
        if host.phase == "going-down":
            raise XapiFailure("HOST_DISABLED_UNTIL_REBOOT", host.ref)
        if not host.live:
            raise XapiFailure("HOST_OFFLINE", host.ref)
        if host.phase == "booting":
            raise XapiFailure("HOST_STILL_BOOTING")
        if host.guidances["mandatory"]:
            raise XapiFailure("HOST_PENDING_MANDATORY_GUIDANCE_NOT_EMPTY", host.ref)
        if not host.enabled:
            host.enabled = True
            pool.emit(host)


def reboot(pool: LabPool, host_ref: str) -> None:
    with pool.lock:
        host = pool.host(host_ref)
        if not host.live:
            raise XapiFailure("HOST_OFFLINE", host.ref)
        if host.enabled:
            raise XapiFailure("HOST_NOT_DISABLED")
        if host.phase != "up":
            raise XapiFailure("OTHER_OPERATION_IN_PROGRESS", "host", host.ref, "reboot", NULL)
        host.phase = "going-down"
        pool.emit(host)
    pool.scheduler.call_later(GOING_DOWN_SECONDS, lambda: power_off(pool, host))


def power_off(pool: LabPool, host: SimHost) -> None:
    with pool.lock:
        if pool.closed:
            return
        host.live, host.enabled, host.phase = False, False, "down"
        for vm in pool.vms.values():
            if vm.is_control_domain:
                continue
            if vm.migrating_to == host.ref or (vm.resident_on == host.ref and vm.migrating_to):
                vm.migration_lost = f"host {host.name} went down"
            if vm.resident_on == host.ref and vm.power_state in ("Running", "Paused"):
                # xapi resets the VMs of a dead host: this is the downtime to avoid.
                vm.power_state, vm.resident_on, vm.domid = "Halted", NULL, -1
                pool.emit(vm)
        pool.emit(host)
        faults = pool.faults.for_host(host.name, host.uuid)
        host.held_down = faults.no_return
        delay = pool.reboot_seconds * BOOT_SHARE + faults.return_late
    host.machine.power_off()
    if not faults.no_return:
        pool.scheduler.call_later(delay, lambda: boot(pool, host))
    pool.notify_watchers()


def boot(pool: LabPool, host: SimHost) -> None:
    """The host is back: new boot, toolstack started, API answering, not yet enabled."""
    with pool.lock:
        if pool.closed or host.live or host.held_down:
            return
        old_version = pool.faults.for_host(host.name, host.uuid).return_old_version
        installer, host.installer = host.installer, None
        installed = host.machine.installed_version()
        if installer and not old_version:
            # The network installer ran: the new release, its base packages only.
            version = installer
            stream = stream_of(version)
            host.machine.set_packages(
                {
                    b.name: Installed(b.version, b.release, time.time())
                    for b in pool.repository.base(stream)
                }
            )
            host.machine.clear_installed_version()
        else:
            version = host.version if old_version or not installed else installed
    host.machine.power_on(str(uuid.uuid4()), version)
    with pool.lock:
        now = pool.now()
        host.version = version
        versions.read_running(pool, host, xen=True)
        host.live, host.enabled, host.phase = True, False, "booting"
        host.boot_time = host.agent_start_time = now
        pool.stamp_boot(host)
        guidances.cleared(pool, host)  # a reboot is what every host guidance asks at most
        if host.ref == pool.master:
            pool.sessions.clear()  # xapi's sessions do not survive its restart
            drop = pool.faults.master_api_drop
            if drop and pool.api_drop_armed:
                pool.api_drop_armed = False
                pool.api_down_until = now + drop.seconds
                pool.scheduler.call_later(drop.seconds, pool.notify_watchers)
        pool.emit(host)
    pool.scheduler.call_later(pool.reboot_seconds * (1 - BOOT_SHARE), lambda: started(pool, host))
    pool.notify_watchers()


def started(pool: LabPool, host: SimHost) -> None:
    """xapi re-enables a host once it has started, then starts the VMs meant to start
    with it: with the pool's other_config auto_poweron "true", each halted VM whose home
    it is and whose own other_config says auto_poweron "true" (what bites a rolling
    upgrade that leaves it on: VMs appear on a host rollup is bringing VMs back to)."""
    with pool.lock:
        if pool.closed or not host.live or host.phase != "booting":
            return
        host.phase, host.enabled = "up", True
        pool.emit(host)
        if pool.other_config.get("auto_poweron") != "true":
            return
        for vm in list(pool.vms.values()):
            wanted = vm.other_config.get("auto_poweron") == "true" and vm.affinity == host.ref
            if wanted and vm.power_state == "Halted":
                with contextlib.suppress(XapiFailure):
                    power.start(pool, vm.ref, host.ref, paused=False)


def restart_agent(pool: LabPool, host_ref: str) -> None:
    with pool.lock:
        host = pool.host(host_ref)
        if not host.live:
            raise XapiFailure("HOST_OFFLINE", host.ref)
        if host.phase != "up" or host.agent_restarting:
            raise XapiFailure(
                "OTHER_OPERATION_IN_PROGRESS", "host", host.ref, "restart_agent", NULL
            )
        host.agent_restarting = True
    pause = max(AGENT_PAUSE_SECONDS, pool.speed * AGENT_PAUSE_REAL_MIN)
    pool.scheduler.call_later(pause, lambda: stop_agent(pool, host))


def stop_agent(pool: LabPool, host: SimHost) -> None:
    with pool.lock:
        if pool.closed or not host.agent_restarting:
            return
        if not host.live or host.phase != "up":
            # A reboot overtook it: the boot starts a new toolstack anyway.
            host.agent_restarting = False
            return
        host.agent_down = True
        if host.ref == pool.master:
            pool.sessions.clear()  # xapi's sessions do not survive its restart
    pool.notify_watchers()
    pool.scheduler.call_later(AGENT_START_SECONDS, lambda: start_agent(pool, host))


def start_agent(pool: LabPool, host: SimHost) -> None:
    """The toolstack is back: a new agent_start_time, the same boot, the host enabled."""
    with pool.lock:
        if pool.closed:
            return
        host.agent_down = host.agent_restarting = False
        if host.live and host.phase == "up":
            host.agent_start_time = pool.now()
            versions.read_running(pool, host, xen=False)
            pool.stamp_boot(host)
            guidances.cleared(pool, host, "restart_toolstack")
            host.enabled = True
            pool.emit(host)
    pool.notify_watchers()
