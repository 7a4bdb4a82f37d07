"""The dashboard steering a real run on the Proxmox lab: the same TUI as for XenAPI."""

from __future__ import annotations

from rollup.run.events import EventBus
from rollup.tui.app import build_app
from tests.pilot import real_rollout, wait_until
from tests.proxmox.conftest import PveLab


async def test_the_dashboard_runs_a_proxmox_cluster_through_its_canary_gate(pve: PveLab):
    bus = EventBus()
    rollout = real_rollout(pve.write_inventory(rollup_canary=1), pve.state, bus, "tui-pve")
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
