"""For Pilot tests of the TUI on real runs: a Rollout on a lab pool, and waiting on the app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollup.commands.session import open_session
from rollup.config import inventory
from rollup.plan import planner
from rollup.remote.patcher import AnsiblePatcher
from rollup.run.context import RunContext
from rollup.run.events import EventBus
from rollup.run.journal import Journal
from rollup.run.rollout import Rollout, RunOptions


def real_rollout(source: Path, state: Path, bus: EventBus, run_id: str) -> Rollout:
    """The Rollout `rollup run` would build for the inventory's pool, journaled in `state`,
    waiting when paused (as the dashboard runs it)."""
    config = inventory.select_pool(inventory.load(str(source)), None)
    session = open_session(config, state)
    pool = session.driver.snapshot()
    plan = planner.plan(pool, config.policy)
    journal = Journal(state)
    journal.create_run(run_id, config.name, pool.id, "inv", "test", {})
    ctx = RunContext(
        run_id=run_id,
        driver=session.driver,
        patcher=AnsiblePatcher(state / "runs"),
        journal=journal,
        bus=bus,
        policy=plan.policy,
        remotes=session.remotes(pool),
    )
    return Rollout(ctx, plan, RunOptions(wait_when_paused=True))


async def wait_until(
    pilot: Any, condition: Callable[[], object], timeout: float = 120.0, what: str = "it"
) -> None:
    """Let the app run until `condition` holds; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"the app never showed {what}")
