"""Automatic concurrency on a 64-host pool, and planning a 256-host, 20,000-VM pool.

    python bench/auto_parallel.py

Side by side on the same generated 64-host lab pool (12 VMs a host, 50 % full), the
maintenance window each plan predicts with the same timing model (rollup's estimate:
migrations at 1 GiB/s, 3 at once per source host, 120 s patch, 100 s reboot):

* the XO-like baseline (bench/baseline.py: master first, one host at a time, xapi's own
  `host.evacuate` placement, every VM migrated home at the end), its moves timed here;
* rollup one host at a time (`rollup_max_parallel_hosts: 1`);
* rollup `auto` with 10 % headroom: the largest batches that leave every VM a place.

Then the planner's time on 256 hosts and 20,000 VMs (median of 3, no tracing), one at a
time and auto. Windows are estimates, not lab runs (bench/window.py runs the lab).
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from typing import Any

from baseline import _guests, _order
from pools import Case, lab_policy, snapshot

from rollup.lab.releases import CURRENT_XCP_NG
from rollup.lab.xapi.objects import NULL
from rollup.lab.xapi.placement import evacuation_plan, pin_error
from rollup.lab.xapi.pool import LabPool
from rollup.model import VM, GiB, Host, Policy, Pool
from rollup.plan import planner
from rollup.plan.estimate import migration_seconds


def baseline_window(pool: LabPool, policy: Policy) -> tuple[float, int]:
    """The baseline's window with rollup's timing model, and its migrations."""
    homes = {
        vm.ref: vm.resident_on
        for vm in pool.vms.values()
        if not vm.is_control_domain and vm.power_state == "Running"
    }
    seconds, migrations = 0.0, 0
    for host in _order(pool):
        stopped = [vm for vm in _guests(pool, host.ref) if pin_error(pool, vm)]
        for vm in stopped:
            vm.power_state, vm.resident_on = "Halted", NULL
        moves, errors = evacuation_plan(pool, host)
        if errors:
            raise RuntimeError(f"xapi would refuse to evacuate {host.name}: {errors}")
        for vm, dest in moves:
            vm.resident_on = dest.ref
        migrations += len(moves)
        seconds += migration_seconds([vm.footprint for vm, _ in moves], policy)
        seconds += policy.patch_seconds + policy.reboot_seconds
        host.version = CURRENT_XCP_NG
        for vm in stopped:
            vm.power_state, vm.resident_on = "Running", host.ref
    back: dict[str, list[int]] = {}
    for ref, home in homes.items():
        vm = pool.vms[ref]
        if vm.resident_on != home:
            back.setdefault(vm.resident_on, []).append(vm.footprint)
            vm.resident_on = home
    migrations += sum(len(m) for m in back.values())
    seconds += max((migration_seconds(m, policy) for m in back.values()), default=0.0)
    return seconds, migrations


def big_pool(hosts: int, vms: int) -> Pool:
    """More hosts than a lab's loopback /24 holds: built as the driver would report it,
    VMs of 0.5 to 8 GiB dealt round the hosts, each host 70 % full."""
    rng = random.Random(25620)
    sizes = [[] for _ in range(hosts)]  # type: list[list[int]]
    for n in range(vms):
        sizes[n % hosts].append(int(rng.choice((0.5, 1, 2, 4, 8)) * GiB))
    overhead = 2 * GiB
    made = [
        Host(
            id=f"host-{i}",
            name=f"h{i + 1}",
            address=f"10.{i // 250}.0.{i % 250 + 1}",
            memory_total=int(sum(guests) / 0.7) + overhead,
            memory_overhead=overhead,
            memory_free=int(sum(guests) / 0.7) - sum(guests),
            version="8.2.1",
            platform_version="3.2.1",
            enabled=True,
            live=True,
            is_master=i == 0,
            boot_mark="1700000000",
        )
        for i, guests in enumerate(sizes)
    ]
    guests = tuple(
        VM(f"vm-{i}-{j}", f"vm{i}-{j}", memory, "Running", f"host-{i}")
        for i, memories in enumerate(sizes)
        for j, memory in enumerate(memories)
    )
    return Pool("pool", "big", "xenapi", "host-0", False, tuple(made), guests)


def plan_seconds(pool: Any, policy: Policy) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        planner.plan(pool, policy)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    case = Case(64, 12, 0.5, seed=6412)
    lab = LabPool(case.layout(), speed=1.0)
    try:
        seen = snapshot(lab)
        with lab.lock:
            base_seconds, base_moves = baseline_window(lab, lab_policy())
    finally:
        lab.close()
    one = planner.plan(seen, lab_policy("return", 1))
    auto_policy = dataclasses.replace(lab_policy("return"), max_parallel_hosts="auto", headroom=0.1)
    auto = planner.plan(seen, auto_policy)
    assert one.feasible and auto.feasible
    print(f"pool: {case.label}")
    print(f"  baseline (XO-like): {base_seconds:,.0f} s, {base_moves:,} migrations")
    print(
        f"  rollup, 1 at a time: {one.estimate_seconds:,.0f} s, {one.migrations:,} migrations,"
        f" {len(one.batches)} batches ({base_seconds / one.estimate_seconds:.2f}x the baseline)"
    )
    print(
        f"  rollup, auto: {auto.estimate_seconds:,.0f} s, {auto.migrations:,} migrations,"
        f" {len(auto.batches)} batches ({base_seconds / auto.estimate_seconds:.2f}x the"
        f" baseline, {one.estimate_seconds / auto.estimate_seconds:.2f}x one at a time)"
    )
    print(f"    {auto.concurrency.reason}")

    big = big_pool(256, 20_000)
    for label, policy in (
        ("1 at a time", Policy(max_parallel_hosts=1, headroom=0.1)),
        ("auto", Policy(max_parallel_hosts="auto", headroom=0.1)),
    ):
        result = planner.plan(big, policy)
        assert result.feasible
        print(
            f"plan 256 hosts x 20,000 VMs, {label}: {plan_seconds(big, policy) * 1000:,.0f} ms"
            f" ({len(result.batches)} batches)"
        )


if __name__ == "__main__":
    main()
