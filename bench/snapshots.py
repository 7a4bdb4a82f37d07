"""Snapshots: reading a 64-host, 2,000-VM pool in full against keeping a view by events.

    python bench/snapshots.py [--vms N] [--rounds N]

A run takes several snapshots per host. Each round here migrates a few VMs through the
lab's XenAPI (what changes between two snapshots of a rollout), then takes one snapshot
both ways, side by side in this process against the same lab server:
- full: `get_all_records` of every class, as the driver read a pool before the view;
- view: the driver's event-kept view (`event.from` since its token).
Both snapshots must be equal, or the bench stops: a fast wrong answer is no answer.
"""

from __future__ import annotations

import argparse
import statistics
import time

from rollup.drivers import Connection
from rollup.drivers.xenapi.driver import XenApiDriver
from rollup.drivers.xenapi.view import PoolView
from rollup.errors import MigrationRefused
from rollup.lab.xapi.pool import LabPool
from rollup.lab.xapi.server import XapiServer
from rollup.model import Pool

HOSTS, SEED, MOVES_PER_ROUND = 64, 5, 4
PASSWORD = "bench-snapshots"


def full_snapshot(driver: XenApiDriver) -> Pool:
    driver._view = PoolView(driver.api, events=False)  # get_all_records, as before the view
    return driver.snapshot(blockers_for=())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    pool = LabPool.generate(
        hosts=HOSTS, vms=args.vms, seed=SEED, address_prefix="127.0.251.", speed=5000
    )
    with XapiServer(pool, user="root", password=PASSWORD) as server:
        connection = Connection(server.url, "root", PASSWORD)
        viewer, full, mover = (XenApiDriver(connection) for _ in range(3))
        try:
            viewer.snapshot(blockers_for=())  # the view's one full read, before timing
            timings: dict[str, list[float]] = {"full": [], "view": []}
            for round_ in range(args.rounds):
                moved = move_some(mover, round_)
                started = time.perf_counter()
                by_view = viewer.snapshot(blockers_for=())
                timings["view"].append(time.perf_counter() - started)
                started = time.perf_counter()
                by_full = full_snapshot(full)
                timings["full"].append(time.perf_counter() - started)
                if by_view != by_full:
                    raise SystemExit(f"round {round_}: the view and a full read differ")
                if moved == 0:
                    raise SystemExit(f"round {round_}: no VM could be moved")
        finally:
            for driver in (viewer, full, mover):
                driver.close()
    pool.close()

    full_s, view_s = (statistics.median(timings[k]) for k in ("full", "view"))
    print(f"{HOSTS} hosts x {args.vms} VMs, {args.rounds} rounds of {MOVES_PER_ROUND} moves")
    print(f"  full read (get_all_records)  {full_s * 1000:8.1f} ms per snapshot (median)")
    print(f"  event-kept view              {view_s * 1000:8.1f} ms per snapshot (median)")
    print(f"  ratio                        {full_s / view_s:8.1f}x faster with the view")


def move_some(driver: XenApiDriver, round_: int) -> int:
    """Live-migrate up to MOVES_PER_ROUND running, movable VMs to another host with room."""
    seen = driver.snapshot()  # with what pins VMs, so that every move is allowed
    candidates = [vm for vm in seen.vms if vm.running and vm.movable]
    moved = 0
    for vm in candidates[round_ * MOVES_PER_ROUND :]:
        dest = next(
            (h for h in seen.hosts if h.id != vm.host and h.enabled and h.memory_free > vm.memory),
            None,
        )
        if dest is None:
            continue
        try:
            driver.migrate(vm.id, dest.id, None)
        except MigrationRefused:  # e.g. the overhead tipped it over: the next one will do
            continue
        moved += 1
        if moved == MOVES_PER_ROUND:
            break
    return moved


if __name__ == "__main__":
    main()
