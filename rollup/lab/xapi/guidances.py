"""Update guidances on lab hosts and VMs: recorded by host.apply_updates, cleared by
their action, as xapi does: a reboot clears all of a host's, a toolstack restart its
`restart_toolstack`, a VM's migration its `restart_device_model`, a restart of the VM
`restart_device_model` and `restart_vm`. Callers hold the pool's lock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rollup.lab.xapi.objects import GUIDANCE_LEVELS, SimHost, SimVM

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool


def add(names: list[str], new: list[str]) -> None:
    names.extend(name for name in new if name not in names)


def add_to_vm(pool: LabPool, vm: SimVM, guidance: str) -> None:
    for level in ("mandatory", "full"):
        add(vm.guidances[level], [guidance])
    pool.emit(vm)


def cleared(pool: LabPool, obj: SimHost | SimVM, *names: str) -> None:
    """Guidances `names` were acted on (none given: all of them)."""
    changed = False
    for level in GUIDANCE_LEVELS:
        keep = [g for g in obj.guidances[level] if names and g not in names]
        changed = changed or keep != obj.guidances[level]
        obj.guidances[level] = keep
    if changed:
        pool.emit(obj)
