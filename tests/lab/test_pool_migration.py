"""VM.pool_migrate and friends: checks, mixed versions, and exact memory accounting."""

from __future__ import annotations

import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.lab.conftest import failure, host, layout, vm, wait_until

LIVE = {"live": "true"}


def test_migration_errors_name_the_vm_and_host(make_lab):
    lab = make_lab(
        layout(
            [host("h1", 32), host("h2", 12), host("h3", 32)],
            [vm("web-01", 2, "h1"), vm("big-01", 12, "h1"), vm("off-01", 2, None)],
        )
    )
    x = lab.session.xenapi
    web, big, off = lab.vm("web-01"), lab.vm("big-01"), lab.vm("off-01")
    h2, h3 = lab.host("h2"), lab.host("h3")
    assert failure(lambda: x.VM.pool_migrate(off, h2, LIVE)) == [
        "VM_BAD_POWER_STATE", off, "running", "halted",
    ]  # fmt: skip
    needed, available = failure(lambda: x.VM.pool_migrate(big, h2, LIVE))[1:]
    assert failure(lambda: x.VM.pool_migrate(big, h2, LIVE))[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert int(needed) > int(available) == lab.free("h2")
    x.host.disable(h3)
    assert failure(lambda: x.VM.pool_migrate(web, h3, LIVE)) == ["HOST_DISABLED", h3]
    assert failure(lambda: x.VM.assert_can_boot_here(web, h3)) == ["HOST_DISABLED", h3]
    x.VM.assert_can_boot_here(web, h2)
    dom0 = x.host.get_control_domain(lab.host("h1"))
    assert failure(lambda: x.VM.pool_migrate(dom0, h2, LIVE))[0] == "OPERATION_NOT_ALLOWED"


def test_a_vm_migrating_is_busy_for_other_operations(make_lab):
    lab = make_lab(layout([host("h1", 64), host("h2", 64)], [vm("big-01", 16, "h1")]), speed=50)
    x = lab.session.xenapi
    big = lab.vm("big-01")
    task = x.Async.VM.pool_migrate(big, lab.host("h2"), LIVE)
    wait_until(lambda: x.VM.get_current_operations(big))
    details = failure(lambda: x.VM.clean_shutdown(big))
    assert details[:4] == ["OTHER_OPERATION_IN_PROGRESS", "VM", big, "pool_migrate"]
    wait_until(lambda: x.task.get_status(task) == "success")


def test_nothing_starts_on_a_host_being_evacuated(make_lab):
    lab = make_lab(
        layout([host("h1", 64), host("h2", 64)], [vm("big-01", 16, "h1"), vm("off-01", 1, None)]),
        speed=50,
    )
    x = lab.session.xenapi
    h1 = lab.host("h1")
    task = x.Async.host.evacuate(h1)
    wait_until(lambda: float(x.task.get_progress(task)) > 0)
    details = failure(lambda: x.VM.start_on(lab.vm("off-01"), h1, False, False))
    assert details == ["HOST_EVACUATE_IN_PROGRESS", h1]
    wait_until(lambda: x.task.get_status(task) == "success")


def test_a_vm_being_migrated_holds_memory_on_both_hosts(make_lab):
    lab = make_lab(layout([host("h1", 64), host("h2", 64)], [vm("big-01", 16, "h1")]), speed=50)
    x = lab.session.xenapi
    before = lab.free("h1"), lab.free("h2")
    task = x.Async.VM.pool_migrate(lab.vm("big-01"), lab.host("h2"), LIVE)
    wait_until(lambda: lab.free("h2") < before[1])
    assert lab.free("h1") == before[0]  # still resident on the source
    footprint = before[1] - lab.free("h2")
    vm_record = x.VM.get_record(lab.vm("big-01"))
    assert footprint == int(vm_record["memory_static_max"]) + int(vm_record["memory_overhead"])
    wait_until(lambda: x.task.get_status(task) == "success")
    assert lab.free("h1") == before[0] + footprint
    assert lab.free("h2") == before[1] - footprint


def test_memory_free_is_capacity_minus_resident_footprints(make_lab):
    lab = make_lab(layout([host("h1", 32)], [vm("a-01", 4, "h1"), vm("b-01", 2, "h1")]))
    x = lab.session.xenapi
    h1 = x.host.get_record(lab.host("h1"))
    total = int(x.host_metrics.get_memory_total(h1["metrics"]))
    records = [x.VM.get_record(ref) for ref in h1["resident_VMs"]]
    footprint = {
        r["name_label"]: int(r["memory_static_max"]) + int(r["memory_overhead"]) for r in records
    }
    dom0 = sum(footprint[r["name_label"]] for r in records if r["is_control_domain"])
    guests = sum(footprint[r["name_label"]] for r in records if not r["is_control_domain"])
    assert guests == footprint["a-01"] + footprint["b-01"]
    assert lab.free("h1") == total - int(h1["memory_overhead"]) - dom0 - guests


def test_no_migration_from_a_newer_to_an_older_host(make_lab):
    lab = make_lab(
        layout(
            [host("h1", 32, "8.3.0"), host("h2", 32, "8.2.1")],
            [vm("web-01", 2, "h1"), vm("web-02", 2, "h2")],
        )
    )
    x = lab.session.xenapi
    pool = x.pool.get_all()[0]
    assert x.pool.get_other_config(pool).get("rolling_upgrade_in_progress")
    details = failure(lambda: x.VM.pool_migrate(lab.vm("web-01"), lab.host("h2"), LIVE))
    assert details == ["NOT_SUPPORTED_DURING_UPGRADE"]
    x.VM.pool_migrate(lab.vm("web-02"), lab.host("h1"), LIVE)  # older to newer is fine
    assert lab.resident("h1") == ["web-01", "web-02"]


def test_shutdown_and_start_on_for_vms_that_cannot_move(make_lab):
    lab = make_lab(layout([host("h1"), host("h2")], [vm("gpu-01", 2, "h1", pin="vgpu")]))
    x = lab.session.xenapi
    gpu = lab.vm("gpu-01")
    x.VM.clean_shutdown(gpu)
    assert x.VM.get_power_state(gpu) == "Halted"
    assert x.VM.get_resident_on(gpu) == "OpaqueRef:NULL"
    assert failure(lambda: x.VM.start_on(gpu, lab.host("h2"), False, False)) == ["VM_HAS_VGPU", gpu]
    x.VM.start_on(gpu, lab.host("h1"), False, False)
    assert x.VM.get_power_state(gpu) == "Running"
    assert failure(lambda: x.VM.start(gpu, False, False))[:3] == [
        "VM_BAD_POWER_STATE", gpu, "halted",
    ]  # fmt: skip
    x.VM.hard_shutdown(gpu)
    x.VM.start(gpu, False, False)  # goes back to its affinity host
    assert lab.resident("h1") == ["gpu-01"]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=16), min_size=2, max_size=10),
    seed=st.integers(min_value=0, max_value=10),
)
def test_memory_is_never_over_committed_while_migrations_overlap(make_lab, sizes, seed):
    vms = [vm(f"vm-{i:02d}", size, f"h{1 + (i + seed) % 3}") for i, size in enumerate(sizes)]
    lab = make_lab(layout([host("h1", 64), host("h2", 64), host("h3", 64)], vms), speed=300)
    x = lab.session.xenapi
    refs = {name: lab.host(name) for name in ("h1", "h2", "h3")}
    vm_refs = [lab.vm(v.name) for v in vms]
    samples: list[int] = []
    done = threading.Event()

    def observe() -> None:
        while not done.is_set():
            samples.extend(lab.pool.memory_free(ref) for ref in refs.values())

    observer = threading.Thread(target=observe)
    observer.start()
    tasks = [
        x.Async.VM.pool_migrate(ref, refs[f"h{1 + (i * 7 + seed) % 3}"], LIVE)
        for i, ref in enumerate(vm_refs)
    ]
    wait_until(lambda: all(x.task.get_status(t) != "pending" for t in tasks))
    done.set()
    observer.join()
    assert min(samples) >= 0
    for t in tasks:
        status = x.task.get_status(t)
        assert status == "success" or x.task.get_error_info(t)[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    total_free = sum(lab.free(name) for name in refs)
    running = sum(
        int(x.VM.get_memory_static_max(r)) + int(x.VM.get_memory_overhead(r)) for r in vm_refs
    )
    capacity = sum(lab.pool.capacity(ref) for ref in refs.values())
    assert total_free == capacity - running
