"""How many events a second the dashboard folds and draws, on a 64-host, ~3000-VM pool.

Feeds N synthetic events through the real app, headless, from another thread the way
the rollout's worker threads emit them (migration progress mostly, with state changes
and Ansible tasks mixed in), and waits until the screen has applied every one.

    python bench/tui_throughput.py [N]

Prints events/second handled and the slowest redraw (the UI must stay responsive
during a burst: a redraw well under 100 ms keeps keys and the mouse live).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "tui"))

from scenario import RUN_ID, large_plan

from rollup.model import Plan
from rollup.run.events import (
    SEQUENCE,
    AnsibleTask,
    Event,
    EventBus,
    HostStateChanged,
    MigrationProgress,
)
from rollup.tui.app import build_app


def synthetic(plan: Plan, count: int) -> list[Event]:
    """Host after host moving its VMs in 10% steps, with state changes and tasks mixed in."""
    events: list[Event] = []
    steps = plan.steps
    i = 0
    while len(events) < count:
        step = steps[i % len(steps)]
        state = SEQUENCE[1 + i % (len(SEQUENCE) - 2)]
        events.append(HostStateChanged(RUN_ID, step.host, step.host_name, state, "pending"))
        for move in step.evacuate:
            for tenth in range(11):
                events.append(
                    MigrationProgress(
                        RUN_ID, step.host, move.vm, move.vm_name, move.source, move.dest,
                        "dest", tenth / 10, "done" if tenth == 10 else "running",
                    )
                )  # fmt: skip
        events.append(AnsibleTask(RUN_ID, step.host, step.host_name, "p.yml", "yum update", "ok"))
        i += 1
    return events[:count]


async def measure(count: int) -> tuple[float, float, int]:
    plan = large_plan()
    events = synthetic(plan, count)
    bus = EventBus()
    app = build_app(plan, object(), bus, run_id=RUN_ID, start_run=False)  # type: ignore[arg-type]
    slowest = 0.0
    drain = app.drain

    def timed_drain() -> None:
        nonlocal slowest
        started = time.perf_counter()
        drain()
        slowest = max(slowest, time.perf_counter() - started)

    app.drain = timed_drain  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        started = time.perf_counter()
        emitter = threading.Thread(target=lambda: [bus.emit(e) for e in events])
        emitter.start()
        while app.view.events_applied < count:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        emitter.join()
    return count / elapsed, slowest, len(plan.pool.vms)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rate, slowest, vms = asyncio.run(measure(count))
    print(
        f"{count} events on 64 hosts / {vms} VMs: {rate:,.0f} events/s handled;"
        f" slowest redraw {slowest * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
