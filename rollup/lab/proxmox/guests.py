"""What the lab's PVE API does to guests: start, stop, reboot and migrate them, as tasks.

A live migration (`online=1`) runs through the simulated pool's migrations, with its
timing, limits and faults; its task log says how far it got. Offline, a stopped VM's
configuration moves to the target node. What keeps a VM on its node is refused as
Proxmox refuses it: local devices by the call, local disks by the task.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rollup.lab.proxmox import resources
from rollup.lab.proxmox.failure import PveFailure
from rollup.lab.proxmox.resources import node
from rollup.lab.proxmox.tasks import Log
from rollup.lab.xapi import migration
from rollup.lab.xapi import power as vm_power
from rollup.lab.xapi.failure import XapiFailure

if TYPE_CHECKING:
    from rollup.lab.proxmox.api import Cluster, Request
    from rollup.lab.xapi.pool import LabPool

LOCAL_DISKS = "can't live migrate attached local disks without with-local-disks option"


def power(cluster: Cluster, request: Request) -> Any:
    pool, action = cluster.pool, request["action"]
    with pool.lock:
        vm, host = cluster.vm(request), node(pool, request["node"])
        vmid = str(cluster.ids.vmids[vm.ref])

    def work(add: Log) -> None:
        try:
            if action == "start":
                vm_power.start(pool, vm.ref, host.ref, paused=False)
            elif action in ("shutdown", "stop"):
                vm_power.shutdown(pool, vm.ref)
            else:
                vm_power.reboot(pool, vm.ref)
        except XapiFailure as failure:
            raise PveFailure(500, _said(failure, pool)) from None

    return cluster.task(request, f"qm{action}", vmid, work)


def migrate(cluster: Cluster, request: Request) -> Any:
    pool = cluster.pool
    with pool.lock:
        vm = cluster.vm(request)
        if request.method == "GET":
            return resources.migrate_check(pool, cluster.ids, vm)
        target_name = request.params.get("target", "")
        if not target_name:
            raise PveFailure(
                400,
                "Parameter verification failed.",
                {"target": "property is missing and it is not optional"},
            )
        target = node(pool, target_name)
        if target.name == request["node"]:
            raise PveFailure(
                400, "Parameter verification failed.", {"target": "target is local node."}
            )
        running = vm.power_state == "Running"
        online = request.params.get("online") in ("1", "true")
        if running and not online:
            raise PveFailure(500, "can't migrate running VM without --online")
        if running and vm.pin in resources.PIN_DEVICES:
            raise PveFailure(
                500, f"can't migrate VM which uses local devices: {resources.PIN_DEVICES[vm.pin]}"
            )
        vmid = cluster.ids.vmids[vm.ref]
        local_disks = vm.pin == "local-sr" and request.params.get("with-local-disks") not in (
            "1",
            "true",
        )

    def work(add: Log) -> None:
        started = time.monotonic()
        add(f"starting migration of VM {vmid} to node '{target.name}' ({target.address})")
        if local_disks and running:
            disk = f"{resources.LOCAL_STORAGE}:vm-{vmid}-disk-0"
            raise PveFailure(500, f"migration aborted (duration 00:00:00): {LOCAL_DISKS} ({disk})")
        if not running:
            with pool.lock:
                vm.affinity = target.ref
                pool.emit(vm)
            add("migration finished successfully (duration 00:00:00)")
            return
        shown = [0.0]

        def progress(fraction: float) -> None:
            if fraction - shown[0] >= 0.25:
                shown[0] = fraction
                # As QEMU's migration says it: each figure in its own unit.
                moved = vm.footprint * fraction / 2**20
                total = vm.footprint / 2**30
                add(
                    f"migration active, transferred {moved:.1f} MiB of {total:.1f} GiB"
                    " VM-state, 1.0 GiB/s"
                )

        try:
            migration.pool_migrate(pool, vm.ref, target.ref, progress=progress)
        except XapiFailure as failure:
            raise PveFailure(500, f"migration problems: {_said(failure, pool)}") from None
        took = int(time.monotonic() - started)
        add(f"migration finished successfully (duration 00:{took // 60:02d}:{took % 60:02d})")

    return cluster.task(request, "qmigrate", str(vmid), work)


def _said(failure: XapiFailure, pool: LabPool) -> str:
    """What a PVE node would say where the simulated pool refused."""
    words = {
        "HOST_NOT_ENOUGH_FREE_MEMORY": "not enough memory on the target node",
        "HOST_DISABLED": "target node is in maintenance mode",
        "HOST_OFFLINE": "target node is offline",
        "VM_BAD_POWER_STATE": "VM is not in the right state",
        "VM_MIGRATE_FAILED": "migration failed",
        "NO_HOSTS_AVAILABLE": "no node can run it",
    }
    detail = words.get(failure.code, failure.code.lower().replace("_", " "))
    return (
        f"{detail} ({', '.join(failure.params[-1:])})"
        if failure.code == "VM_MIGRATE_FAILED"
        else detail
    )
