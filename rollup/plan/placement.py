"""Where every running VM goes at every step: the whole run simulated with exact memory.

The simulation walks the hosts in their upgrade order and groups them into batches. For
each batch it evacuates the batch's hosts at once (best-fit decreasing onto hosts outside
the batch), then brings VMs back once the batch's hosts are upgraded:

* `return`: every VM evacuated in a batch goes back to its host right after that host is
  upgraded (the batch's restore moves), so every other batch finds the starting layout
  and the run ends in it. Returns cannot fail for memory: the host held those VMs moments
  before and has been empty since.
* `upgraded-first`: evacuated VMs go first to upgraded hosts (done in this run, or already
  at the target), then to hosts the run leaves alone, and only then to hosts still waiting
  for their upgrade. Those last ones go back in the same batch to the host they came
  from, now upgraded, instead of being evacuated again later: every VM moves at most
  twice, never more than with `return`, and the return fits for the same reason.

Whatever the strategy, a VM never moves to a host whose version is older than the one it
runs on now (xapi refuses it during a rolling upgrade); a host's version becomes the
target once its step is done. No evacuation fills a host past its limit: its capacity
less the policy's headroom.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rollup.model import VM, Host, Strategy
from rollup.plan.packing import Layout, Migration, VersionKey, pack

# Without a target version the new version is unknown; ranking it above every real version
# keeps the newer→older rule conservative (nothing moves off an upgraded host anyway).
UNKNOWN_UPGRADE: VersionKey = (2**31,)


@dataclass(frozen=True)
class Turn:
    """One host's scheduled upgrade as the simulation needs it."""

    host: Host
    stop: tuple[VM, ...] = ()  # unmovable VMs shut down for the upgrade, started after
    stay: tuple[VM, ...] = ()  # unmovable VMs the policy refuses to touch (plan infeasible)
    in_place: bool = False  # patched where it runs: every VM stays


@dataclass
class BatchOutcome:
    turns: tuple[Turn, ...]
    evacuate: dict[str, list[Migration]]  # by source host id
    restore: dict[str, list[Migration]]  # by the batch host receiving the VMs
    unplaced: dict[str, list[VM]]  # VMs with no place, by the host they stay on
    free_outside: int  # free bytes on the hosts that could take this batch's VMs (not older)
    largest_free: int  # the most free on any one of those hosts
    memory_before: dict[str, int]
    memory_after: dict[str, int]
    memory_peak: dict[str, int]
    unreturned: list[Migration] = field(default_factory=list)  # returns xapi would refuse


StopReason = Literal["memory", "zone", "alone", "limit", "end"]


@dataclass(frozen=True)
class Stop:
    """Why a batch took no more hosts."""

    size: int  # hosts in the batch
    reason: StopReason
    next_host: Host | None = None  # the host that did not join
    homeless: VM | None = None  # memory: the biggest VM with no place had it joined
    short: int = 0  # memory: bytes the batch's VMs would lack in all, had it joined


@dataclass
class Simulation:
    """Plans the batches of a run over a `Layout`, one batch at a time, in order."""

    layout: Layout
    strategy: Strategy
    new_version: VersionKey
    rank: dict[str, int]  # VM id → position in the pool, for stable ties
    host_rank: dict[str, int]  # host id → position in the run order
    upgraded: dict[str, None]  # hosts at the new version: done in this run, or already there
    final: dict[str, None]  # hosts that will not be evacuated again in this run
    eligible: dict[str, None]  # enabled and live hosts, plus every host done in this run
    outcomes: list[BatchOutcome] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)  # one per outcome
    order: dict[str, int] = field(init=False)  # VM id → place, biggest first (see pack)

    def tiers(self, batch: Sequence[str]) -> list[list[str]]:
        inside = set(batch)
        hosts = sorted(
            (h for h in self.eligible if h not in inside), key=lambda h: self.host_rank[h]
        )
        if self.strategy == "return":
            # A VM parked on a host newer than the target could never come home.
            version, new = self.layout.version, self.new_version
            return [
                [h for h in hosts if version[h] <= new],
                [h for h in hosts if version[h] > new],
            ]
        upgraded = [h for h in hosts if h in self.upgraded]
        other_final = [h for h in hosts if h in self.final and h not in self.upgraded]
        transient = [h for h in hosts if h not in self.final]
        return [upgraded, other_final, transient]

    def movable(self, turns: Sequence[Turn]) -> list[VM]:
        held = {vm.id for turn in turns for vm in (*turn.stop, *turn.stay)}
        return [
            vm
            for turn in turns
            for vm in self.layout.guests[turn.host.id].values()
            if vm.id not in held
        ]

    def __post_init__(self) -> None:
        running = [vm for guests in self.layout.guests.values() for vm in guests.values()]
        biggest_first = sorted(running, key=lambda vm: (-vm.memory, self.rank[vm.id]))
        self.order = {vm.id: i for i, vm in enumerate(biggest_first)}

    def attempt(
        self, turns: Sequence[Turn], give_up: bool = False
    ) -> tuple[list[Migration], list[VM], list[int]]:
        batch = [t.host.id for t in turns]
        tiers = self.tiers(batch)
        used = dict(self.layout.used)
        # Free memory on the hosts that could take at least some of the batch's VMs.
        floor = min(self.layout.version[h] for h in batch)
        free = [
            max(0, self.layout.capacity[h] - used[h])
            for tier in tiers
            for h in tier
            if self.layout.version[h] >= floor
        ]
        moves, unplaced = pack(self.movable(turns), tiers, self.layout, used, self.order, give_up)
        return moves, unplaced, free

    def commit(
        self, turns: Sequence[Turn], moves: list[Migration], unplaced: list[VM], free: list[int]
    ) -> BatchOutcome:
        layout = self.layout
        batch = [t.host.id for t in turns]
        before = dict(layout.used)
        for turn in turns:
            for vm in turn.stop:
                layout.remove(vm)
        for move in moves:
            layout.move(move.vm, move.dest)
        mid = dict(layout.used)

        for host in batch:
            layout.version[host] = self.new_version
            self.upgraded[host] = None
            self.final[host] = None
            self.eligible[host] = None
        for turn in turns:
            for vm in turn.stop:
                layout.add(vm, turn.host.id)

        restore: dict[str, list[Migration]] = {h: [] for h in batch}
        unreturned: list[Migration] = []
        for move in moves:
            wanted = self.strategy == "return" or move.dest not in self.final
            if not wanted:
                continue
            if layout.version[move.dest] > layout.version[move.source]:
                unreturned.append(move)
                continue
            layout.move(move.vm, move.source)
            restore[move.source].append(Migration(move.vm, move.dest, move.source))
        after = dict(layout.used)

        evacuate: dict[str, list[Migration]] = {h: [] for h in batch}
        for move in moves:
            evacuate[move.source].append(move)
        stranded: dict[str, list[VM]] = {h: [] for h in batch}
        for vm in unplaced:
            stranded[layout.where[vm.id]].append(vm)
        outcome = BatchOutcome(
            turns=tuple(turns),
            evacuate=evacuate,
            restore=restore,
            unplaced=stranded,
            free_outside=sum(free),
            largest_free=max(free, default=0),
            memory_before=before,
            memory_after=after,
            # Within each phase a host only sends or only receives, so its most held is at
            # a phase boundary; see the schema for why this bounds every instant.
            # (The three dicts share their key order: each is a copy of layout.used.)
            memory_peak=dict(
                zip(before, map(max, before.values(), mid.values(), after.values()), strict=True)
            ),
            unreturned=unreturned,
        )
        self.outcomes.append(outcome)
        return outcome

    def run(
        self,
        turns: Sequence[Turn],
        max_parallel: int,
        alone: Sequence[str],
        zone: dict[str, str | None] | None = None,
    ) -> None:
        """Group consecutive turns into batches of up to `max_parallel` hosts.

        A host in `alone` (the master, the canaries) gets a batch of its own; a batch never
        spans two zones (host id → zone). A batch only grows while all of its VMs still
        find a place outside it.
        """
        zones = zone or {}
        i = 0
        while i < len(turns):
            reach, stop = self._reach(turns, i, max_parallel, alone, zones)
            moves, unplaced, free = self.attempt(turns[i : i + 1])
            size = 1
            if unplaced:
                stop = Stop(1, "memory", None, self._biggest(unplaced))
            elif reach > 1:
                # The most hosts that still leave every VM a place: bisect between a size
                # that fits and one that does not (a bigger batch only takes targets
                # away, so fitting shrinks as the batch grows). Memory in total bounds it
                # first: a batch whose VMs outweigh all the room outside cannot fit.
                bound, short = self._room_for(turns, i, reach)
                too_many, failed = (bound + 1, None) if bound < reach else (reach + 1, None)
                if bound > 1:
                    first = self.attempt(turns[i : i + bound], give_up=True)
                    if not first[1]:
                        size, (moves, unplaced, free) = bound, first
                    else:
                        failed, too_many = first, bound
                while too_many - size > 1:
                    middle = (size + too_many) // 2
                    trial = self.attempt(turns[i : i + middle], give_up=True)
                    if trial[1]:
                        failed, too_many = trial, middle
                    else:
                        size, (moves, unplaced, free) = middle, trial
                if failed is not None:
                    stop = Stop(size, "memory", turns[i + size].host, self._biggest(failed[1]))
                elif size < reach:
                    stop = Stop(size, "memory", turns[i + size].host, None, short)
            self.stops.append(dataclasses.replace(stop, size=size))
            self.commit(turns[i : i + size], moves, unplaced, free)
            i += size

    def _room_for(self, turns: Sequence[Turn], i: int, reach: int) -> tuple[int, int]:
        """The most turns from `i` (1 to `reach`) whose movable VMs weigh no more than the
        room left on every other eligible host; and, when that is fewer than `reach`, by
        how many bytes the next one falls short. A bound only: where the VMs really fit
        is for `pack` to say."""
        capacity, used = self.layout.capacity, self.layout.used
        room = sum(max(0, capacity[h] - used[h]) for h in self.eligible)
        need = 0
        for k in range(reach):
            turn = turns[i + k]
            need += sum(vm.memory for vm in self.movable([turn]))
            if turn.host.id in self.eligible:
                room -= max(0, capacity[turn.host.id] - used[turn.host.id])
            if need > room:
                return max(1, k), need - room
        return reach, 0

    def _reach(
        self,
        turns: Sequence[Turn],
        i: int,
        max_parallel: int,
        alone: Sequence[str],
        zone: dict[str, str | None],
    ) -> tuple[int, Stop]:
        """How many turns from `i` one batch may hold whatever the memory, and what ends it."""
        size = 1
        while True:
            following = turns[i + size] if i + size < len(turns) else None
            stop = self._stop(turns[i : i + size], following, max_parallel, alone, zone)
            if stop is not None:
                return size, stop
            size += 1

    def _biggest(self, vms: Sequence[VM]) -> VM:
        return max(vms, key=lambda vm: (vm.memory, -self.rank[vm.id]))

    @staticmethod
    def _stop(
        batch: Sequence[Turn],
        following: Turn | None,
        max_parallel: int,
        alone: Sequence[str],
        zone: dict[str, str | None],
    ) -> Stop | None:
        """Why the batch cannot take `following` whatever the memory, or None if it may."""
        size = len(batch)
        if following is None:
            return Stop(size, "end")
        host = following.host
        if batch[0].host.id in alone or host.id in alone:
            return Stop(size, "alone", host)
        if zone.get(batch[0].host.id) != zone.get(host.id):
            return Stop(size, "zone", host)
        if size >= max_parallel:
            return Stop(size, "limit", host)
        return None
