"""Every benchmark in one command, then the summary table for the README.

    python bench/run_all.py [--quick]

Runs, in order: migration economy (bench/migrations.py), maintenance window with full
lab runs (bench/window.py), control overhead from those runs (bench/overhead.py), and
scale (bench/scale.py); prints each one's details, then one markdown table with the
machine it ran on. About 9.5 minutes on 2 cores; `--quick` runs only the 8- and 16-host
window runs (about 2 minutes). Benchmarks, not tests: nothing here asserts.
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


def summary(
    economy: list[migrations.Economy],
    windows: list[window.PoolResult],
    control: overhead.Overhead,
    big: scale.Scale,
) -> str:
    rows = [
        "| hosts | pools | migrations: baseline / rollup `return` / `upgraded-first`"
        " | GiB moved ratio (`upgraded-first`) | window: baseline / rollup"
        " | rollup / lower bound |",
        "|---|---|---|---|---|---|",
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
        runs = [w for w in windows if w.case.hosts == hosts]
        if runs:
            w = runs[0]
            win = (
                f"{w.baseline.charged / w.rollup.charged:.2f}x"
                f" ({w.baseline.charged:,.0f} s / {w.rollup.charged:,.0f} s)"
            )
            bound = f"{w.rollup.charged / w.lower_bound:.2f}x ({w.lower_bound:,.0f} s)"
        else:
            win = bound = "not run (--quick)"
        rows.append(
            f"| {hosts} | {len(mine)} | {base / ret:.2f}x / {base / upg:.2f}x"
            f" ({base:,} / {ret:,} / {upg:,}) | {gib:.2f}x | {win} | {bound} |"
        )
    overall = migrations.totals(economy)
    rows.append(
        f"| all | {len(economy)} | {overall['return'][0]:.2f}x / "
        f"{overall['upgraded-first'][0]:.2f}x | {overall['upgraded-first'][1]:.2f}x | | |"
    )
    reaction = statistics.median(control.reaction_ms)
    lines = [
        *rows,
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
        f"- machine: {machine()}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small pools only (~2 min)")
    quick = parser.parse_args().quick
    started = time.monotonic()
    economy = timed("migration economy", lambda: migrations.measure(quick))
    migrations.report(economy)
    print()
    windows = timed("maintenance window", lambda: window.measure(quick))
    window.report(windows)
    print()
    control = overhead.from_window(windows)
    overhead.report(control)
    print()
    big = timed("scale", lambda: scale.measure(quick))
    scale.report(big)
    print()
    print(f"Summary ({time.monotonic() - started:.0f} s)")
    print(summary(economy, windows, control, big))


if __name__ == "__main__":
    main()
