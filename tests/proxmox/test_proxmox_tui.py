"""The dashboard steering a real run on the Proxmox lab: the same TUI as for XenAPI."""

from __future__ import annotations

from typing import Any

from rollup.commands.session import open_session
from rollup.config import inventory
from rollup.plan import planner
from rollup.remote.patcher import AnsiblePatcher
from rollup.run.context import RunContext
from rollup.run.events import EventBus
from rollup.run.journal import Journal
from rollup.run.rollout import Rollout, RunOptions
from rollup.tui.app import build_app
from tests.proxmox.conftest import PveLab


def make_rollout(pve: PveLab, bus: EventBus) -> Rollout:
    config = inventory.select_pool(inventory.load(str(pve.write_inventory(rollup_canary=1))), None)
    session = open_session(config, pve.state)
    pool = session.driver.snapshot()
    plan = planner.plan(pool, config.policy)
    journal = Journal(pve.state)
    journal.create_run("tui-pve", config.name, pool.id, "inv", "test", {})
    ctx = RunContext(
        run_id="tui-pve",
        driver=session.driver,
        patcher=AnsiblePatcher(pve.state / "runs"),
        journal=journal,
        bus=bus,
        policy=plan.policy,
        remotes=session.remotes(pool),
    )
    return Rollout(ctx, plan, RunOptions(wait_when_paused=True))


async def wait_until(pilot: Any, condition: Any, timeout: float = 120.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError("the dashboard never showed it")


async def test_the_dashboard_runs_a_proxmox_cluster_through_its_canary_gate(pve: PveLab):
    bus = EventBus()
    rollout = make_rollout(pve, bus)
    app = build_app(rollout.plan, rollout, bus, run_id="tui-pve")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.view.state == "awaiting_approval")
        canary = [h for h, v in app.view.hosts.items() if v.state == "done"]
        assert len(canary) == 1
        assert pve.pending()[canary[0]] == [], "the canary node is patched"
        await pilot.press("y")
        await wait_until(pilot, lambda: app.view.state == "completed", timeout=240)
        await pilot.press("q")
    rollout.ctx.driver.close()
    assert all(updates == [] for updates in pve.pending().values())
    assert pve.in_maintenance() == set() and not pve.noout()
