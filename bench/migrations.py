"""Migration economy: what rollup's plans move against the XO-like baseline.

    python bench/migrations.py [--quick]

On generated lab pools of 8 to 64 hosts, 10 to 60 VMs a host, 50 to 80 % full (the
generator's `fill`, pinned per pool; fixed seeds), counts the live migrations and the GiB
they carry:

* rollup: `Plan.migrations` and `Plan.bytes_moved` of `plan(pool, policy)` with each
  strategy (`return`, `upgraded-first`), one host at a time as the baseline;
* baseline: bench/baseline.py `simulate`, i.e. xapi's own `host.evacuate` placement
  (the lab's implementation of it), master first, one host at a time, then everything
  migrated back home, skipping VMs already home. bench/window.py checks on full runs
  that the real XenAPI baseline moves exactly this much.

Ratios are baseline / rollup: how many times more the established approach moves.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from baseline import Traffic, simulate
from pools import Case, grid, lab_policy, snapshot

from rollup.lab.xapi.pool import LabPool
from rollup.model import GiB
from rollup.plan import planner


@dataclass(frozen=True)
class Economy:
    case: Case
    baseline: Traffic
    rollup: dict[str, tuple[int, int]]  # strategy → (migrations, bytes)

    def ratio(self, strategy: str) -> tuple[float, float]:
        migrations, moved = self.rollup[strategy]
        return self.baseline.migrations / migrations, self.baseline.bytes_moved / moved


def measure_case(case: Case) -> Economy:
    layout = case.layout()
    pool = LabPool(layout, speed=1.0)
    try:
        seen = snapshot(pool)
    finally:
        pool.close()
    rollup = {}
    for strategy in ("return", "upgraded-first"):
        plan = planner.plan(seen, lab_policy(strategy))
        if not plan.feasible:
            failed = [c.reason for c in plan.checks if c.status == "fail"]
            raise RuntimeError(f"{case.label}: rollup refuses the plan: {failed[:2]}")
        rollup[strategy] = (plan.migrations, plan.bytes_moved)
    return Economy(case, simulate(layout), rollup)


def measure(quick: bool) -> list[Economy]:
    return [measure_case(case) for case in grid(quick)]


def totals(results: list[Economy]) -> dict[str, tuple[float, float]]:
    """Overall ratio: all pools' baseline traffic over all pools' rollup traffic."""
    base_m = sum(r.baseline.migrations for r in results)
    base_b = sum(r.baseline.bytes_moved for r in results)
    out = {}
    for strategy in ("return", "upgraded-first"):
        m = sum(r.rollup[strategy][0] for r in results)
        b = sum(r.rollup[strategy][1] for r in results)
        out[strategy] = (base_m / m, base_b / b)
    return out


def report(results: list[Economy]) -> None:
    print("Migration economy (migrations / GiB moved; ratio = baseline / rollup)")
    print(
        f"{'pool':<24} {'baseline':>15} {'return':>15} {'upgraded-first':>15}"
        f" {'x return':>13} {'x upg-first':>13}"
    )
    for r in results:
        cells = [f"{r.baseline.migrations:>5} / {r.baseline.bytes_moved / GiB:>7.0f}"]
        for strategy in ("return", "upgraded-first"):
            m, b = r.rollup[strategy]
            cells.append(f"{m:>5} / {b / GiB:>7.0f}")
        ratios = [f"{a:.2f}/{b:.2f}" for a, b in (r.ratio("return"), r.ratio("upgraded-first"))]
        note = f"  ({r.baseline.unreturned} not home)" if r.baseline.unreturned else ""
        print(f"{r.case.label:<24} " + " ".join(f"{c:>15}" for c in cells)
              + f" {ratios[0]:>13} {ratios[1]:>13}{note}")  # fmt: skip
    overall = totals(results)
    print(
        "overall: return {:.2f}x migrations, {:.2f}x GiB; upgraded-first {:.2f}x, {:.2f}x".format(
            *overall["return"], *overall["upgraded-first"]
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    report(measure(parser.parse_args().quick))


if __name__ == "__main__":
    main()
