"""Crash matrix: the controller is killed (SIGKILL) as it enters each state, then
`rollup resume` finishes the job with nothing lost.

For every HostUpgrade state a run passes through (for the master h1, and for a member
h2 where it matters) and for the Rollout's start and its gates, a fresh 3-host XCP-ng
lab with 12 VMs is patched the default way (each host's updater plugin, then a reboot)
by `rollup run --json`; the test kills the controller the moment the JSON event of that
state arrives, runs `rollup resume --yes --no-tui`, and checks the promise: every host
patched and enabled, every VM that ran runs exactly once, HA as it was, no lock left,
the journal in step with the pool. (The playbook path's crashes are test_run_lab's.)

The matrix (state x outcome) is printed at the end: with `pytest -s` and in the terminal
summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.reliability.conftest import MakeLab
from tests.reliability.matrix import Matrix, record_row
from tests.reliability.pool_checks import (
    assert_finished,
    host_state,
    run_state,
    start_rollup,
)


@dataclass(frozen=True)
class Crash:
    where: str  # "h1", "h2" or "run"
    state: str  # the host state, or the run state, entered when the controller dies
    ha: bool = False  # HA on in the pool before the run
    gate: str = ""  # for run states: "start" or "canary"

    @property
    def name(self) -> str:
        label = f"{self.where} {self.state}" + (f" ({self.gate} gate)" if self.gate else "")
        return label + (", HA on" if self.ha else "")


HOST_STATES = ("checking", "disabling", "evacuating", "patching")
CASES = [
    Crash("run", "running", ha=True),
    Crash("run", "awaiting_approval", gate="start"),
    Crash("run", "awaiting_approval", ha=True, gate="canary"),
    *(Crash("h1", state, ha=state in ("checking", "patching")) for state in HOST_STATES),
    # The master's reboot takes the API away: the resumed controller must wait for it.
    Crash("h1", "rebooting", ha=True),
    Crash("h1", "verifying"),
    Crash("h1", "enabling", ha=True),
    Crash("h1", "restoring"),
    # h2 holds a pinned VM, shut down for its upgrade and started again by `restoring`.
    Crash("h2", "evacuating", ha=True),
    Crash("h2", "rebooting"),
    Crash("h2", "restoring", ha=True),
]

MATRIX = Matrix("Crash matrix: controller killed (SIGKILL) on entering a state, then resumed")


@pytest.fixture(scope="module")
def matrix() -> Iterator[Matrix]:
    yield MATRIX
    print("\n" + MATRIX.table())


@pytest.mark.parametrize("crash", CASES, ids=lambda c: c.name.replace(" ", "-"))
def test_a_controller_killed_on_entering_a_state_is_resumed_with_nothing_lost(
    make_lab: MakeLab, matrix: Matrix, crash: Crash
):
    with record_row(matrix, crash.name) as row:
        lab = make_lab(release="8.3.0", update="xapi")
        # A fix for every host, so each one has something to install and reboots for it.
        pool = lab.running.pool
        pool.repository.publish(["userspace"], pool.repository.home)
        if crash.ha:
            lab.running.pool.set_ha(True)
        before = lab.snapshot()
        inventory = lab.inventory
        if crash.gate == "canary":
            inventory = lab.write_inventory(rollup_canary=1)
        # Without --yes (and no terminal) the run waits for `rollup approve` first.
        yes = () if crash.gate else ("--yes",)
        child = start_rollup(lab, "run", str(inventory), "--no-tui", *yes)
        if crash.gate == "canary":
            child.until(run_state("awaiting_approval"))
            assert lab.rollup("approve", child.run_id).returncode == 0
            child.until(run_state("awaiting_approval"))
            assert any(e["state"] == "done" for e in child.events if e["kind"] == "host-state")
        elif crash.where == "run":
            child.until(run_state(crash.state))
        else:
            child.until(host_state(crash.where, crash.state))
        child.kill()
        row.note(f"killed in {crash.state}")

        resumed = lab.rollup("resume", "--yes", "--no-tui")
        row.note(f"resume exit {resumed.returncode}")
        assert resumed.returncode == 0, resumed.stderr
        assert_finished(lab, before, child.run_id)
        row.note("pool whole")


def test_the_crash_matrix_holds(matrix: Matrix):
    """Every row of the matrix passed (the table is printed in the terminal summary)."""
    print("\n" + matrix.table())
    assert matrix.rows, "run the whole module: the matrix is empty"
    failed = [row for row in matrix.rows if not row.ok]
    assert not failed, "\n" + matrix.table()
