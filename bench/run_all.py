"""Every benchmark in one command, then the summary table for the README.

    python bench/run_all.py [--quick]

Runs, in order: migration economy (bench/migrations.py), maintenance window with full
lab runs (bench/window.py), control overhead from those runs (bench/overhead.py), and
scale (bench/scale.py); prints each one's details, then the markdown tables with the
machine it ran on and its load average (timings are real time: a loaded machine shows).
About 10 minutes on 2 cores (617 s with load average 2.5 to 11 from other jobs);
`--quick` runs only the 8-host window runs and smaller grids (about 2 minutes: the full
run's 8-host window runs took 114 s). Benchmarks, not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import migrations
import overhead
import scale
import window

T = TypeVar("T")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with Path("/proc/cpuinfo").open() as info:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    return f"{os.cpu_count()} cores (nproc), {cpu}, Python {platform.python_version()}"


def timed(what: str, run: Callable[[], T]) -> T:
    started = time.monotonic()
    print(f"[{what}...]", file=sys.stderr, flush=True)
    result = run()
    print(f"[{what}: {time.monotonic() - started:.0f} s]", file=sys.stderr, flush=True)
    return result


def _cell(result: window.PoolResult, config: tuple[str, int]) -> str:
    rollout = result.rollouts.get(config)  # type: ignore[call-overload]
    if rollout is None:
        return "not run"
    run, base = rollout.run, result.baseline.charged
    batches = f", {run.batches} batches" if rollout.parallel > 1 else ""
    return (
        f"{base / run.charged:.2f}x ({run.charged:,.0f} s{batches};"
        f" {run.charged / rollout.lower_bound:.2f}x its bound {rollout.lower_bound:,.0f} s)"
    )


def summary(
    economy: list[migrations.Economy],
    windows: list[window.PoolResult],
    control: overhead.Overhead,
    big: scale.Scale,
    load: str,
) -> str:
    rows = [
        "| hosts | pools | migrations: baseline / rollup `return` / `upgraded-first`"
        " | GiB moved ratio (`upgraded-first`) |",
        "|---|---|---|---|",
    ]
    sizes = sorted({e.case.hosts for e in economy})
    for hosts in sizes:
        mine = [e for e in economy if e.case.hosts == hosts]
        base = sum(e.baseline.migrations for e in mine)
        ret = sum(e.rollup["return"][0] for e in mine)
        upg = sum(e.rollup["upgraded-first"][0] for e in mine)
        gib = sum(e.baseline.bytes_moved for e in mine) / sum(
            e.rollup["upgraded-first"][1] for e in mine
        )
        rows.append(
            f"| {hosts} | {len(mine)} | {base / ret:.2f}x / {base / upg:.2f}x"
            f" ({base:,} / {ret:,} / {upg:,}) | {gib:.2f}x |"
        )
    overall = migrations.totals(economy)
    rows.append(
        f"| all | {len(economy)} | {overall['return'][0]:.2f}x / "
        f"{overall['upgraded-first'][0]:.2f}x | {overall['upgraded-first'][1]:.2f}x |"
    )
    configs = [c for c in window.CONFIGS if any(c in w.rollouts for w in windows)]
    names = {1: "1 host at a time", 2: "2 hosts at once", 4: "4 hosts at once"}
    heads = [f"rollup `{s}`, {names.get(n, f'{n} hosts at once')}" for s, n in configs]
    table = [
        "| hosts | baseline (XO-like) | " + " | ".join(heads) + " |",
        "|---|---|" + "---|" * len(configs),
    ]
    for w in windows:
        cells = [_cell(w, c) for c in configs]
        table.append(
            f"| {w.case.hosts} | {w.baseline.charged:,.0f} s | " + " | ".join(cells) + " |"
        )
    reaction = statistics.median(control.reaction_ms)
    lines = [
        *rows,
        "",
        "Maintenance window (baseline / rollup: above 1, rollup is shorter; then rollup /"
        " the lower bound of its own plan):",
        "",
        *table,
        "",
        f"- control overhead: rollup acts on a host back (enabled and live) in"
        f" {reaction:.0f} ms (median; max {max(control.reaction_ms):.0f} ms,"
        f" {len(control.reaction_ms)} hosts); its patch step takes"
        f" {control.patch_ratio:.2f}x a bare `ansible-playbook` of the same playbook"
        f" ({statistics.median(control.patch_s):.2f} s vs"
        f" {statistics.median(control.bare_ansible_s):.2f} s)",
        f"- scale, 64 hosts x {big.vms:,} VMs: plan in"
        f" {big.plan_seconds['return'] * 1000:.0f} ms (`return`) /"
        f" {big.plan_seconds['upgraded-first'] * 1000:.0f} ms (`upgraded-first`), at most"
        f" {max(big.plan_peak_mib.values()):.0f} MiB allocated by planning"
        f" ({big.max_rss_mib:.0f} MiB max RSS for the whole benchmark process); dashboard"
        f" {big.tui_events_per_second:,.0f} events/s on that plan, slowest redraw"
        f" {big.tui_slowest_redraw_ms:.0f} ms",
        f"- machine: {machine()}; {load}",
    ]
    return "\n".join(lines)


def load_average() -> str:
    """The machine's load (1, 5, 15 min), as `uptime` shows it: timings are real time."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small pools only (~2 min)")
    quick = parser.parse_args().quick
    started = time.monotonic()
    loads = [load_average()]
    economy = timed("migration economy", lambda: migrations.measure(quick))
    migrations.report(economy)
    print()
    windows = timed("maintenance window", lambda: window.measure(quick))
    loads.append(load_average())
    window.report(windows)
    print()
    control = overhead.from_window(windows)
    overhead.report(control)
    print()
    big = timed("scale", lambda: scale.measure(quick))
    scale.report(big)
    print()
    print(f"Summary ({time.monotonic() - started:.0f} s)")
    loads.append(load_average())
    load = f"{loads[0]} at the start, {loads[1]} after the window runs, {loads[2]} at the end"
    print(summary(economy, windows, control, big, load))


if __name__ == "__main__":
    main()
