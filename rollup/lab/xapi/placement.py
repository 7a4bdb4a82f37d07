"""Where a VM may run: the checks xapi makes before a migration, a start or an evacuation.

Each check raises the XenAPI error a client would get; `evacuation_plan` collects them
per VM, so `host.evacuate` can fail before anything moves. Call with the pool's lock held.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.objects import SimHost, SimVM, any_lower

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool


def pin_error(pool: LabPool, vm: SimVM) -> XapiFailure | None:
    """What keeps a VM on its host: a local disk, a PCI device, a vGPU, an SR-IOV NIC."""
    if vm.pin == "local-sr":
        return XapiFailure("VM_REQUIRES_SR", vm.ref, vm.local_sr)
    if vm.pin == "pci":
        return XapiFailure("VM_HAS_PCI_ATTACHED", vm.ref)
    if vm.pin == "vgpu":
        return XapiFailure("VM_HAS_VGPU", vm.ref)
    if vm.pin == "sriov":
        return XapiFailure("VM_HAS_SRIOV_VIF", vm.ref)
    return None


def check_host_accepts(pool: LabPool, host: SimHost) -> None:
    if not host.live:
        raise XapiFailure("HOST_OFFLINE", host.ref)
    if not host.enabled:
        raise XapiFailure("HOST_DISABLED", host.ref)
    if host.evacuating:
        raise XapiFailure("HOST_EVACUATE_IN_PROGRESS", host.ref)


def check_memory(pool: LabPool, vm: SimVM, host: SimHost) -> None:
    available = pool.memory_free(host.ref)
    if vm.footprint > available:
        raise XapiFailure("HOST_NOT_ENOUGH_FREE_MEMORY", vm.footprint, available)


def check_not_busy(vm: SimVM) -> None:
    for op_ref, operation in vm.operations.items():
        raise XapiFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm.ref, operation, op_ref)


def check_migration(pool: LabPool, vm: SimVM, dest: SimHost, busy_ok: bool = False) -> None:
    """Everything VM.pool_migrate checks before the VM moves."""
    if vm.is_control_domain:
        raise XapiFailure("OPERATION_NOT_ALLOWED", "control domains cannot be migrated")
    if vm.power_state != "Running":
        raise XapiFailure("VM_BAD_POWER_STATE", vm.ref, "running", vm.power_state.lower())
    if not busy_ok:
        check_not_busy(vm)
    if vm.resident_on == dest.ref:
        return
    error = pin_error(pool, vm)
    if error:
        raise error
    check_host_accepts(pool, dest)
    source = pool.hosts[vm.resident_on]
    # message_forwarding.ml VM.pool_migrate: refused during a rolling upgrade when the
    # target's platform, xapi build or Xen version is lower than the source's.
    if "rolling_upgrade_in_progress" in pool.other_config and dest.older_than(source):
        raise XapiFailure("NOT_SUPPORTED_DURING_UPGRADE")
    check_memory(pool, vm, dest)


def check_boot(pool: LabPool, vm: SimVM, host: SimHost) -> None:
    """What VM.start_on and VM.assert_can_boot_here check for a halted VM. While the
    pool's versions differ, VMs start only on its newest hosts."""
    check_host_accepts(pool, host)
    # helpers.ml Checks.RPU.assert_host_has_highest_version_in_pool.
    if "rolling_upgrade_in_progress" in pool.other_config and any(
        any_lower(host.rpu_versions(), other.rpu_versions()) for other in pool.hosts.values()
    ):
        raise XapiFailure("NOT_SUPPORTED_DURING_UPGRADE")
    if vm.pin and host.ref != vm.pin_host:
        error = pin_error(pool, vm)
        if error:
            raise error
    check_memory(pool, vm, host)


def evacuation_targets(pool: LabPool, host: SimHost) -> list[SimHost]:
    """Other hosts enabled, live, up and not of a lower version than `host`."""
    return [
        other
        for other in pool.hosts.values()
        if other.ref != host.ref
        and other.live
        and other.enabled
        and other.phase == "up"
        and not other.evacuating
        and not other.older_than(host)
    ]


def evacuation_plan(
    pool: LabPool, host: SimHost
) -> tuple[list[tuple[SimVM, SimHost]], dict[str, XapiFailure]]:
    """Moves for every running guest, or the error of each VM that has no place.

    Biggest VMs first; each to its affinity host when it fits there, else to the target
    it fits best (least memory left over), so large VMs still find room at the end.
    """
    targets = evacuation_targets(pool, host)
    free = {t.ref: pool.memory_free(t.ref) for t in targets}
    moves: list[tuple[SimVM, SimHost]] = []
    errors: dict[str, XapiFailure] = {}
    guests = [
        vm
        for vm in pool.resident_vms(host.ref)
        if not vm.is_control_domain and vm.migrating_to is None
    ]
    for vm in sorted(guests, key=lambda vm: (-vm.footprint, vm.name)):
        error = pin_error(pool, vm)
        if error is None and pool.ha_enabled and not vm.ha_priority:
            error = XapiFailure("HOST_EVACUATE_VM_NOT_HA_PROTECTED", vm.ref)
        if error is None and not targets:
            error = XapiFailure("NO_HOSTS_AVAILABLE")
        if error is None and vm.power_state != "Running":
            error = XapiFailure("VM_BAD_POWER_STATE", vm.ref, "running", vm.power_state.lower())
        if error is not None:
            errors[vm.ref] = error
            continue
        fits = [t for t in targets if free[t.ref] >= vm.footprint]
        if not fits:
            errors[vm.ref] = XapiFailure("HOST_NOT_ENOUGH_FREE_MEMORY", vm.ref)
            continue
        home = next((t for t in fits if t.ref == vm.affinity), None)
        dest = home or min(fits, key=lambda t: (free[t.ref] - vm.footprint, t.name))
        free[dest.ref] -= vm.footprint
        moves.append((vm, dest))
    return moves, errors
