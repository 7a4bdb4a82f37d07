"""The faults in force on a lab pool: putting a new set in force, and counting VM failures.

lab/faults.py reads them from their YAML file; the pool takes them at run time
(`LabPool.set_faults`), so clearing a fault lets a run go on: a host held down by
`no_return` boots as soon as that fault is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rollup.errors import BadInput
from rollup.lab.faults import Faults
from rollup.lab.xapi import lifecycle
from rollup.lab.xapi.objects import SimHost, SimVM

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool


def put_in_force(pool: LabPool, faults: Faults) -> None:
    """Replace the faults in force; unknown host or VM names are refused."""
    for name in faults.hosts:
        _check_name(pool, name, pool.host_named, "hosts", "host")
    for name in faults.vms:
        _check_name(pool, name, pool.vm_named, "vms", "VM")
    released: list[SimHost] = []
    with pool.lock:
        pool.faults = faults
        pool.vm_failures = {
            pool.vm_named(name).ref: f.fail_migration for name, f in faults.vms.items()
        }
        pool.apply_failures = {
            pool.host_named(name).ref: f.apply_in_progress for name, f in faults.hosts.items()
        }
        for host in pool.hosts.values():
            if host.held_down and not pool.faults.for_host(host.name, host.uuid).no_return:
                host.held_down = False
                released.append(host)
        drop = faults.master_api_drop
        pool.api_drop_armed = drop is not None and drop.when == "next-reboot"
        if drop and drop.when == "now":
            pool.api_down_until = pool.now() + drop.seconds
            pool.scheduler.call_later(drop.seconds, pool.notify_watchers)
    for host in pool.hosts.values():
        f = pool.faults.for_host(host.name, host.uuid)
        host.machine.set_faults(f)
    for host in released:
        pool.scheduler.call_later(0, lambda host=host: lifecycle.boot(pool, host))
    pool.notify_watchers()


def take_migration_failure(pool: LabPool, vm: SimVM) -> bool:
    """Whether this migration of `vm` fails under its `fail_migration` fault (counts it)."""
    return _take(pool.vm_failures, vm.ref)


def take_apply_failure(pool: LabPool, host: SimHost) -> bool:
    """Whether this host.apply_updates is refused under its `apply_in_progress` fault."""
    return _take(pool.apply_failures, host.ref)


def _take(counts: dict[str, int | None], ref: str) -> bool:
    """One strike of a counted fault: True while it has strikes left (None: for good)."""
    if ref not in counts:
        return False
    left = counts[ref]
    if left is None:
        return True
    if left <= 0:
        return False
    counts[ref] = left - 1
    return True


def _check_name(pool: LabPool, name: str, find: Callable[[str], Any], key: str, kind: str) -> None:
    try:
        find(name)
    except KeyError:
        raise BadInput(
            f"faults: {key}.{name}: no {kind} of that name or uuid in the lab pool; "
            f"use one of {', '.join(_names(pool, kind))}"
        ) from None


def _names(pool: LabPool, kind: str) -> list[str]:
    if kind == "host":
        return [h.name for h in pool.hosts.values()]
    return [vm.name for vm in pool.vms.values() if not vm.is_control_domain][:10]
