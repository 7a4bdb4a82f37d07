"""The dashboard steering a real Rollout on a lab pool (real XML-RPC, sshd, Ansible)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollup.run.events import EventBus
from rollup.run.rollout import Rollout
from rollup.tui.app import build_app
from tests.pilot import real_rollout, wait_until
from tests.rollout.conftest import Lab, start_lab


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    started = start_lab(tmp_path)
    try:
        yield started
    finally:
        started.running.stop()


def make_rollout(lab: Lab, bus: EventBus) -> Rollout:
    return real_rollout(lab.write_inventory(rollup_canary=1), lab.state, bus, "tui-run")


async def test_keys_pause_resume_and_approve_a_real_run(lab: Lab):
    bus = EventBus()
    rollout = make_rollout(lab, bus)
    app = build_app(rollout.plan, rollout, bus, run_id="tui-run")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.view.state == "running")
        await pilot.press("p")
        await wait_until(pilot, lambda: app.view.state == "paused")
        paused_at = {h: v.state for h, v in app.view.hosts.items()}
        await asyncio.sleep(1.0)
        assert {h: v.state for h, v in app.view.hosts.items()} == paused_at, "a pause holds"
        await pilot.press("p")
        # One canary host, then the gate: `y` approves it.
        await wait_until(pilot, lambda: app.view.state == "awaiting_approval")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.view.state == "completed", timeout=240)
        await pilot.press("q")
    rollout.ctx.driver.close()
    after = lab.snapshot()
    assert all(h.version == "8.3.0" and h.enabled for h in after.hosts)
