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
target once its step is done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rollup.model import VM, Host, Pool, Strategy

VersionKey = tuple[int, ...]

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


@dataclass(frozen=True)
class Migration:
    vm: VM
    source: str
    dest: str


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


@dataclass
class Layout:
    """Mutable simulation state: where each running VM is and how full each host is."""

    capacity: dict[str, int]
    used: dict[str, int]
    where: dict[str, str]
    version: dict[str, VersionKey]
    # Insertion-ordered so that every walk over a host's guests is deterministic.
    guests: dict[str, dict[str, VM]]

    @classmethod
    def of(cls, pool: Pool, version: dict[str, VersionKey]) -> Layout:
        layout = cls(
            capacity={h.id: h.capacity for h in pool.hosts},
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
    rank: dict[str, int],
) -> tuple[list[Migration], list[VM]]:
    """Best-fit decreasing: biggest VM first, onto the fullest host of the first tier it fits.

    `used` is updated in place (pass a copy to try a batch); sources are not credited
    because during an evacuation they are not targets. Ties go to the earlier host in
    `tiers`, and between equal VMs to the earlier one in the pool, so the result is stable.
    """
    moves: list[Migration] = []
    unplaced: list[VM] = []
    capacity, version = layout.capacity, layout.version
    for vm in sorted(vms, key=lambda v: (-v.memory, rank[v.id])):
        source = layout.where[vm.id]
        floor = version[source]
        dest: str | None = None
        for tier in tiers:
            best_free = -1
            for host in tier:
                free = capacity[host] - used[host]
                if free >= vm.memory and (dest is None or free < best_free):
                    if version[host] < floor:
                        continue
                    dest, best_free = host, free
            if dest is not None:
                break
        if dest is None:
            unplaced.append(vm)
        else:
            used[dest] += vm.memory
            moves.append(Migration(vm, source, dest))
    return moves, unplaced


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

    def tiers(self, batch: Sequence[str]) -> list[list[str]]:
        hosts = sorted(
            (h for h in self.eligible if h not in batch), key=lambda h: self.host_rank[h]
        )
        if self.strategy == "return":
            # A VM parked on a host newer than the target could never come home.
            returnable = [h for h in hosts if self.layout.version[h] <= self.new_version]
            return [returnable, [h for h in hosts if h not in returnable]]
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

    def attempt(self, turns: Sequence[Turn]) -> tuple[list[Migration], list[VM], list[int]]:
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
        moves, unplaced = pack(self.movable(turns), tiers, self.layout, used, self.rank)
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
            memory_peak={h: max(before[h], mid[h], after[h]) for h in before},
            unreturned=unreturned,
        )
        self.outcomes.append(outcome)
        return outcome

    def run(self, turns: Sequence[Turn], max_parallel: int, alone: Sequence[str]) -> None:
        """Group consecutive turns into batches of up to `max_parallel` hosts.

        A host in `alone` (the master, the canaries) gets a batch of its own. A batch only
        grows while all of its VMs still find a place outside it.
        """
        i = 0
        while i < len(turns):
            batch = [turns[i]]
            moves, unplaced, free = self.attempt(batch)
            i += 1
            while (
                not unplaced
                and len(batch) < max_parallel
                and i < len(turns)
                and batch[0].host.id not in alone
                and turns[i].host.id not in alone
            ):
                trial = [*batch, turns[i]]
                trial_moves, trial_unplaced, trial_free = self.attempt(trial)
                if trial_unplaced:
                    break
                batch, moves, free = trial, trial_moves, trial_free
                i += 1
            self.commit(batch, moves, unplaced, free)
