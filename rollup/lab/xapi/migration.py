"""Live migration and host evacuation in the lab, with xapi's timing and limits.

A migration lasts footprint / bandwidth (simulated); at most `migrations_per_host` leave
one source host at once, the others queue. While in flight the VM is resident on its
source and counted on both hosts (see lab/pool.py). The calling thread waits on the
pool's condition, so other API calls go on meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rollup.lab.xapi import fault_state, guidances, placement, tasks
from rollup.lab.xapi.failure import XapiFailure
from rollup.lab.xapi.objects import SimHost, SimTask, SimVM

if TYPE_CHECKING:
    from rollup.lab.xapi.pool import LabPool

Progress = Callable[[float], None]


def pool_migrate(
    pool: LabPool, vm_ref: str, dest_ref: str, task: SimTask | None = None,
    progress: Progress | None = None,
) -> None:  # fmt: skip
    with pool.lock:
        vm, dest = pool.vm(vm_ref), pool.host(dest_ref)
        placement.check_migration(pool, vm, dest)
        if vm.resident_on == dest.ref:
            return
        source_ref = vm.resident_on
        op_ref = task.ref if task else f"OpaqueRef:op-{id(threading.current_thread())}"
        vm.operations[op_ref] = "pool_migrate"
        pool.emit(vm)
        try:
            _wait_for_slot(pool, source_ref, task)
            # The pool may have changed while queued: check again before reserving memory.
            placement.check_migration(pool, vm, dest, busy_ok=True)
            if vm.resident_on != source_ref:
                raise XapiFailure("VM_MIGRATE_FAILED", vm.ref, source_ref, dest.ref, "VM moved")
            pool.migrating_out[source_ref] = pool.migrating_out.get(source_ref, 0) + 1
            vm.migrating_to, vm.migration_lost = dest.ref, ""
            pool.emit_vm_move(vm, source_ref, dest.ref)
            try:
                _fly(pool, vm, source_ref, dest.ref, task, progress)
            finally:
                pool.migrating_out[source_ref] -= 1
                vm.migrating_to = None
        finally:
            vm.operations.pop(op_ref, None)
            pool.emit_vm_move(vm, source_ref, dest.ref)


def _wait_for_slot(pool: LabPool, source_ref: str, task: SimTask | None) -> None:
    while pool.migrating_out.get(source_ref, 0) >= pool.migrations_per_host:
        _check_cancel(task)
        if pool.closed:
            raise XapiFailure("INTERNAL_ERROR", "lab pool closed")
        pool.changed.wait(0.5)


def _fly(
    pool: LabPool, vm: SimVM, source_ref: str, dest_ref: str, task: SimTask | None,
    progress: Progress | None,
) -> None:  # fmt: skip
    duration = pool.scheduler.real(vm.footprint / pool.bandwidth)
    start = time.monotonic()
    end = start + duration
    while True:
        now = time.monotonic()
        if vm.migration_lost:
            raise XapiFailure("VM_MIGRATE_FAILED", vm.ref, source_ref, dest_ref, vm.migration_lost)
        if task is not None and task.cancel_requested:
            raise XapiFailure("TASK_CANCELLED", task.ref)
        if pool.closed:
            raise XapiFailure("INTERNAL_ERROR", "lab pool closed")
        if now >= end:
            break
        fraction = (now - start) / duration if duration else 1.0
        if progress:
            progress(fraction)
        tasks.set_progress(pool, task, fraction)
        pool.changed.wait(min(end - now, max(duration / 10, 0.005)))
    if fault_state.take_migration_failure(pool, vm):
        raise XapiFailure(
            "VM_MIGRATE_FAILED", vm.ref, source_ref, dest_ref, "lab fault: migration failed"
        )
    vm.resident_on = dest_ref
    guidances.cleared(pool, vm, "restart_device_model")  # it runs a new device model there


def _check_cancel(task: SimTask | None) -> None:
    if task is not None and task.cancel_requested:
        raise XapiFailure("TASK_CANCELLED", task.ref)


def evacuate(
    pool: LabPool, host_ref: str, batch_size: int = 10, task: SimTask | None = None
) -> None:
    """Plan first and fail before anything moves; then migrate in batches."""
    with pool.lock:
        host = pool.host(host_ref)
        if not host.live:
            raise XapiFailure("HOST_OFFLINE", host.ref)
        if host.evacuating:
            raise XapiFailure("HOST_EVACUATE_IN_PROGRESS", host.ref)
        moves, errors = placement.evacuation_plan(pool, host)
        if errors:
            raise next(iter(errors.values()))
        host.evacuating = True
        pool.emit(host)
    try:
        done: dict[str, float] = {}
        for start in range(0, len(moves), max(1, batch_size)):
            _check_cancel(task)
            failures = _run_batch(pool, moves[start : start + batch_size], task, done, len(moves))
            if failures:
                raise failures[0]
        with pool.lock:
            while any(vm.migrating_to for vm in pool.resident_vms(host.ref)):
                pool.changed.wait(0.5)
            left = [vm for vm in pool.resident_vms(host.ref) if not vm.is_control_domain]
            if left:
                raise XapiFailure("INTERNAL_ERROR", f"VMs still resident: {left[0].ref}")
    finally:
        with pool.lock:
            host.evacuating = False
            pool.emit(host)


def _run_batch(
    pool: LabPool,
    batch: list[tuple[SimVM, SimHost]],
    task: SimTask | None,
    done: dict[str, float],
    total: int,
) -> list[XapiFailure]:
    failures: list[XapiFailure] = []

    def move(vm_ref: str, dest_ref: str) -> None:
        def progress(fraction: float) -> None:
            done[vm_ref] = fraction
            tasks.set_progress(pool, task, sum(done.values()) / total)

        try:
            pool_migrate(pool, vm_ref, dest_ref, None, progress)
            progress(1.0)
        except XapiFailure as failure:
            failures.append(failure)

    threads = [
        threading.Thread(target=move, args=(vm.ref, dest.ref), daemon=True) for vm, dest in batch
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures
