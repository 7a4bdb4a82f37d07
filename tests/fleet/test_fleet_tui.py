"""The fleet view steering real runs of two lab pools, driven by Textual's Pilot."""

from __future__ import annotations

from pathlib import Path

import yaml
from textual.widgets import DataTable

from rollup.commands.fleet import Fleet
from rollup.commands.parser import build_parser
from rollup.commands.plan import load_inventory
from rollup.config.inventory import select_pools
from rollup.run.journal import Journal
from rollup.tui.dashboard import Dashboard
from rollup.tui.fleet import FleetApp, PoolsScreen
from tests.fleet.test_fleet_run import lab_pool
from tests.pilot import wait_until


def cells(app: FleetApp) -> dict[str, list[str]]:
    table = app.pools_screen.query_one(DataTable)
    return {
        str(row[0]): [str(c) for c in row]
        for row in (table.get_row_at(i) for i in range(table.row_count))
    }


async def steer(app: FleetApp) -> dict[str, list[str]]:
    """Approve east from its dashboard, then west from its own; the rows at the end."""
    waiting = "awaiting approval"
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_until(pilot, lambda: all(cells(app)[p][1] == waiting for p in ("east", "west")))
        assert isinstance(app.screen, PoolsScreen)

        await pilot.press("enter")  # east's dashboard
        assert isinstance(app.screen, Dashboard) and app.open == "east"
        await pilot.press("y")  # approves east only
        await wait_until(pilot, lambda: cells(app)["east"][1].startswith("completed"))
        assert cells(app)["west"][1] == waiting, "west waits for its own approval"
        await pilot.press("q")  # back to the pools
        assert isinstance(app.screen, PoolsScreen)

        await pilot.press("down", "enter", "y")  # west's dashboard, approved
        assert app.open == "west"
        await wait_until(pilot, lambda: app.outcomes is not None)
        await pilot.pause(0.2)  # one more redraw of the table
        rows = cells(app)
        await pilot.press("q", "q")  # back, and quit: every pool is over
    return rows


async def test_each_pool_waits_for_its_own_approval_and_the_view_follows_both(tmp_path: Path):
    inventory = tmp_path / "fleet.yml"
    east, west = lab_pool(6, ["e1", "e2", "e3"]), lab_pool(7, ["w1", "w2", "w3"])
    inventory.write_text(yaml.safe_dump({"all": {"children": {"east": east, "west": west}}}))
    # No --yes and no terminal: each pool's run waits for approval before it starts.
    args = build_parser().parse_args(
        ["run", str(inventory), "--pools", "all", "--state-dir", str(tmp_path / "state")]
    )
    fleet = Fleet(args, Journal(tmp_path / "state"), select_pools(load_inventory(args), "all"))
    app = FleetApp(fleet, parallel=2)
    fleet.on_rollout = app.attach
    try:
        rows = await steer(app)
    finally:
        fleet.stop()  # a failed assertion must not leave a run waiting for approval
    for pool in ("east", "west"):
        _, state, hosts, _, run = rows[pool]
        assert state.startswith("completed: ") and run
        done, planned = hosts.split("/")
        assert done == planned and int(planned) >= 1
    assert [o.exit_code for o in app.return_value or []] == [0, 0]
