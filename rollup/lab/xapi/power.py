"""Starting and stopping lab VMs: for the VMs a policy stops and restarts (pinned ones)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rollup.lab.xapi import guidances, placement
from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.objects import NULL

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool


def start(pool: LabPool, vm_ref: str, host_ref: str | None, paused: bool) -> None:
    """VM.start_on (host given) or VM.start (affinity host first, then any that fits)."""
    with pool.lock:
        vm = pool.vm(vm_ref)
        if vm.power_state != "Halted":
            raise XapiFailure("VM_BAD_POWER_STATE", vm.ref, "halted", vm.power_state.lower())
        placement.check_not_busy(vm)
        if host_ref is not None:
            host = pool.host(host_ref)
            placement.check_boot(pool, vm, host)
        else:
            candidates = sorted(pool.hosts.values(), key=lambda h: (h.ref != vm.affinity, h.name))
            errors: list[XapiFailure] = []
            for candidate in candidates:
                try:
                    placement.check_boot(pool, vm, candidate)
                except XapiFailure as error:
                    errors.append(error)
                    continue
                host = candidate
                break
            else:
                memory = [e for e in errors if e.code == "HOST_NOT_ENOUGH_FREE_MEMORY"]
                raise memory[0] if memory else XapiFailure("NO_HOSTS_AVAILABLE")
        vm.resident_on = host.ref
        vm.power_state = "Paused" if paused else "Running"
        vm.domid = max(v.domid for v in pool.vms.values()) + 1
        guidances.cleared(pool, vm, "restart_device_model", "restart_vm")
        pool.emit_vm_move(vm, host.ref)


def shutdown(pool: LabPool, vm_ref: str) -> None:
    """VM.clean_shutdown and VM.hard_shutdown: the lab's guests always comply."""
    with pool.lock:
        vm = pool.vm(vm_ref)
        if vm.is_control_domain:
            raise XapiFailure("OPERATION_NOT_ALLOWED", "control domains cannot be shut down")
        if vm.power_state not in ("Running", "Paused"):
            raise XapiFailure("VM_BAD_POWER_STATE", vm.ref, "running", vm.power_state.lower())
        placement.check_not_busy(vm)
        host_ref = vm.resident_on
        vm.power_state, vm.resident_on, vm.domid = "Halted", NULL, -1
        pool.emit_vm_move(vm, host_ref)


def reboot(pool: LabPool, vm_ref: str) -> None:
    """VM.clean_reboot and VM.hard_reboot: the guest restarts where it runs (a new domain,
    a new device model), which is what its restart guidances ask."""
    with pool.lock:
        vm = pool.vm(vm_ref)
        if vm.is_control_domain:
            raise XapiFailure("OPERATION_NOT_ALLOWED", "control domains cannot be rebooted")
        if vm.power_state != "Running":
            raise XapiFailure("VM_BAD_POWER_STATE", vm.ref, "running", vm.power_state.lower())
        placement.check_not_busy(vm)
        vm.domid = max(v.domid for v in pool.vms.values()) + 1
        guidances.cleared(pool, vm, "restart_device_model", "restart_vm")
        pool.emit(vm)


def assert_can_boot_here(pool: LabPool, vm_ref: str, host_ref: str) -> None:
    """Placement checks without moving anything: a migration's for a running VM."""
    with pool.lock:
        vm, host = pool.vm(vm_ref), pool.host(host_ref)
        if vm.power_state == "Running":
            placement.check_migration(pool, vm, host, busy_ok=True)
        else:
            placement.check_boot(pool, vm, host)
