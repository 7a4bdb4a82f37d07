"""Scale: planning a 64-host, 5,000-VM pool, and the dashboard fed on that pool's plan.

    python bench/scale.py [--quick]

Plan time is the median of several `plan()` calls per strategy (no tracing: tracemalloc
slows allocation-heavy code a lot); peak memory is measured in a separate traced call
(Python allocations during `plan`), and the process's max RSS is reported as the
ceiling of everything (the lab pool, its snapshot, the plans).
TUI throughput reuses bench/tui_throughput.py's measurement, on this pool's plan.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
import tracemalloc
from dataclasses import dataclass

import tui_throughput
from pools import lab_policy, snapshot

from rollup.lab.generator import generate
from rollup.lab.xapi.pool import LabPool
from rollup.model import MiB, Plan
from rollup.plan import planner

HOSTS, VMS, SEED = 64, 5000, 64


@dataclass(frozen=True)
class Scale:
    vms: int
    plan_seconds: dict[str, float]  # strategy → median seconds
    plan_peak_mib: dict[str, float]  # strategy → traced peak
    max_rss_mib: float
    tui_events_per_second: float
    tui_slowest_redraw_ms: float
    tui_events: int


def measure(quick: bool) -> Scale:
    pool = LabPool(generate(HOSTS, VMS, SEED), speed=1.0)
    try:
        seen = snapshot(pool)
    finally:
        pool.close()
    seconds: dict[str, float] = {}
    peaks: dict[str, float] = {}
    plans: dict[str, Plan] = {}
    for strategy in ("return", "upgraded-first"):
        policy = lab_policy(strategy)
        timings = []
        for _ in range(3 if quick else 7):
            started = time.perf_counter()
            plans[strategy] = planner.plan(seen, policy)
            timings.append(time.perf_counter() - started)
        seconds[strategy] = statistics.median(timings)
        tracemalloc.start()
        planner.plan(seen, policy)
        peaks[strategy] = tracemalloc.get_traced_memory()[1] / MiB
        tracemalloc.stop()
    count = 20_000 if quick else 100_000
    # tui_throughput measures on its own 64-host pool: hand it this one instead.
    tui_throughput.large_plan = lambda: plans["return"]
    rate, slowest, _ = asyncio.run(tui_throughput.measure(count))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return Scale(len(seen.vms), seconds, peaks, rss, rate, slowest * 1000, count)


def report(scale: Scale) -> None:
    print(f"Scale: {HOSTS} hosts x {scale.vms} VMs")
    for strategy, seconds in scale.plan_seconds.items():
        print(
            f"  plan {strategy:<15} {seconds * 1000:7.0f} ms,"
            f" peak {scale.plan_peak_mib[strategy]:.0f} MiB allocated"
        )
    print(f"  process max RSS {scale.max_rss_mib:.0f} MiB")
    print(
        f"  TUI: {scale.tui_events} events, {scale.tui_events_per_second:,.0f} events/s,"
        f" slowest redraw {scale.tui_slowest_redraw_ms:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    report(measure(parser.parse_args().quick))


if __name__ == "__main__":
    main()
