"""Load: a 64-host pool patched end to end, 8 hosts at once, with nothing lost.

The lab runs at speed 2000 (a 90 s reboot lasts 45 ms, an 8 GiB migration 4 ms),
XCP-ng 8.3 patched the way the default lab is: every host asked what it has pending and
updated through its updater plugin (a curl fix is published first, so every host has
something), then rebooted and checked to have nothing left.

Size: 64 hosts with 2,000 VMs, as the promise says (`ROLLUP_LOAD_VMS` changes it); the
controller's snapshots are cheap since the driver keeps its view of the pool by events
instead of reading 2,000 VM records each time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from tests.reliability.conftest import MakeLab
from tests.reliability.matrix import Matrix, record_row
from tests.reliability.pool_checks import assert_finished, latest_run, running

HOSTS, PARALLEL = 64, 8
VMS = int(os.environ.get("ROLLUP_LOAD_VMS", "2000"))
MATRIX = Matrix(f"Load: {HOSTS} hosts, {VMS} VMs, up to {PARALLEL} hosts at once")


@pytest.fixture(scope="module")
def matrix() -> Iterator[Matrix]:
    yield MATRIX
    print("\n" + MATRIX.table())


@pytest.mark.timeout(900)  # a safety bound for a slow machine, not a performance claim
def test_a_64_host_pool_with_1000_vms_or_more_is_patched_with_nothing_lost(
    make_lab: MakeLab, matrix: Matrix
):
    with record_row(matrix, f"{HOSTS} hosts x {VMS} VMs, patched through XAPI") as row:
        lab = make_lab(
            hosts=HOSTS, vms=VMS, speed=2000.0, ssh=False, release="8.3.0", update="xapi"
        )
        pool = lab.running.pool
        pool.repository.publish(["userspace"], pool.repository.home)
        pool.set_ha(True)
        before = lab.snapshot()
        assert len(before.hosts) == HOSTS and len(before.vms) == VMS
        inventory = lab.write_inventory(rollup_max_parallel_hosts=PARALLEL)
        result = lab.rollup("run", str(inventory), "--yes", "--no-tui", timeout=840)
        summary = re.search(r"run\s+completed: (.*)", result.stderr)
        row.note(f"run exit {result.returncode}")
        assert result.returncode == 0, result.stderr[-5000:]
        assert summary is not None, result.stderr[-2000:]
        row.note(summary.group(1))
        after = assert_finished(lab, before, latest_run(lab))
        # Strategy `return`: every running VM ends on the host it started on.
        moved = {vm for vm, host in running(before).items() if running(after)[vm] != host}
        assert not moved, f"{len(moved)} VM(s) did not go back home"
        row.note("pool whole, every VM home")
