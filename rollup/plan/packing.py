"""Best fit: where an evacuation's VMs go, over a mutable layout of the pool's memory.

`Layout` is where each running VM is and how full each host is, with each host's limit
(its capacity less the policy's headroom); `pack` places a batch's VMs biggest first,
each onto the fullest host of the first tier it fits, never onto a host older than the
one it runs on. `placement.Simulation` runs it batch after batch.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from rollup.model import VM, Pool

VersionKey = tuple[int, ...]


@dataclass(frozen=True)
class Migration:
    vm: VM
    source: str
    dest: str


@dataclass
class Layout:
    """Mutable simulation state: where each running VM is and how full each host is."""

    capacity: dict[str, int]  # the most an evacuation may fill each host to
    used: dict[str, int]
    where: dict[str, str]
    version: dict[str, VersionKey]
    # Insertion-ordered so that every walk over a host's guests is deterministic.
    guests: dict[str, dict[str, VM]]

    @classmethod
    def of(cls, pool: Pool, version: dict[str, VersionKey], headroom: float = 0.0) -> Layout:
        layout = cls(
            capacity={h.id: int(h.capacity * (1.0 - headroom)) for h in pool.hosts},
            used={h.id: 0 for h in pool.hosts},
            where={},
            version=dict(version),
            guests={h.id: {} for h in pool.hosts},
        )
        for vm in pool.vms:
            if vm.running and vm.host in layout.used:
                layout.add(vm, vm.host)
        return layout

    def add(self, vm: VM, host: str) -> None:
        self.where[vm.id] = host
        self.used[host] += vm.memory
        self.guests[host][vm.id] = vm

    def remove(self, vm: VM) -> None:
        host = self.where.pop(vm.id)
        self.used[host] -= vm.memory
        del self.guests[host][vm.id]

    def move(self, vm: VM, dest: str) -> None:
        self.remove(vm)
        self.add(vm, dest)


def pack(
    vms: Sequence[VM],
    tiers: Sequence[Sequence[str]],
    layout: Layout,
    used: dict[str, int],
    order: dict[str, int],
    give_up: bool = False,
) -> tuple[list[Migration], list[VM]]:
    """Best-fit decreasing: biggest VM first, onto the fullest host of the first tier it fits.

    `used` is updated in place (pass a copy to try a batch); sources are not credited
    because during an evacuation they are not targets. Ties go to the earlier host in
    `tiers`, and between equal VMs to the earlier one in the pool (`order`: VM id → its
    place, biggest first), so the result is stable. Each tier is kept sorted by free
    memory, so a VM finds its host by bisection: a plan of thousands of VMs over hundreds
    of hosts stays well under a second. `give_up`: stop at the first VM with no place
    (the biggest such one), for a trial that only asks whether everything fits.
    """
    moves: list[Migration] = []
    unplaced: list[VM] = []
    capacity, version, where = layout.capacity, layout.version, layout.where
    bisect_left, insort = bisect.bisect_left, bisect.insort
    # (free bytes, position in the tier, host): the first entry with enough room is the
    # best fit, and among equally free hosts the earlier one.
    ladders = [
        sorted((capacity[host] - used[host], i, host) for i, host in enumerate(tier))
        for tier in tiers
        if tier
    ]
    for _, vm in sorted((order[vm.id], vm) for vm in vms):
        memory = vm.memory
        source = where[vm.id]
        floor = version[source]
        for ladder in ladders:
            at, end = bisect_left(ladder, (memory,)), len(ladder)
            while at < end and version[ladder[at][2]] < floor:
                at += 1
            if at < end:
                free, position, dest = ladder.pop(at)
                insort(ladder, (free - memory, position, dest))
                used[dest] += memory
                moves.append(Migration(vm, source, dest))
                break
        else:
            unplaced.append(vm)
            if give_up:
                break
    return moves, unplaced
