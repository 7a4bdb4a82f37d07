"""The planner: from a pool snapshot and a policy to an ordered, checked, placed Plan.

Pure and deterministic: no I/O, no clock (`now` only tells a stale run lock from a live
one), and every choice is ordered by a key that does not depend on hashing, so the same
input always gives the same plan. The work is split by concern: `checks` (admission),
`placement` (the simulated run), `estimate` (timing); this module decides the order and
who is skipped, and assembles the Plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollup.model import (
    VM,
    Batch,
    Check,
    Concurrency,
    Host,
    HostStep,
    Move,
    Plan,
    Policy,
    Pool,
    SkippedHost,
    UnfinishedRun,
    version_key,
)
from rollup.plan import checks, prestage
from rollup.plan.estimate import migration_seconds, step_seconds
from rollup.plan.packing import Layout, Migration
from rollup.plan.placement import UNKNOWN_UPGRADE, BatchOutcome, Simulation, Stop, Turn
from rollup.text.plurals import count, noun
from rollup.text.units import format_gib


def master_id(pool: Pool) -> str | None:
    return pool.master or next((h.id for h in pool.hosts if h.is_master), None)


def zones(pool: Pool, policy: Policy) -> dict[str, str | None]:
    """Host id → its zone (rollup_zone), None for a host given none."""
    named = dict(policy.zones)
    return {h.id: named.get(h.name) for h in pool.hosts}


def run_order(pool: Pool, policy: Policy) -> list[Host]:
    """Every host in the order the run takes them: the master first, then by policy, the
    hosts of one zone together (zones in the order their first host comes)."""
    master = master_id(pool)
    if policy.order == "least-loaded":
        load = {h.id: 0 for h in pool.hosts}
        for vm in pool.vms:
            if vm.running and vm.host in load:
                load[vm.host] += vm.memory
        others = sorted(pool.hosts, key=lambda h: (load[h.id], h.name, h.id))
    else:
        position = {name: i for i, name in enumerate(policy.host_order)}
        others = sorted(
            pool.hosts,
            key=lambda h: (
                (0, position[h.name], "", "") if h.name in position else (1, 0, h.name, h.id)
            ),
        )
    if policy.zones:
        zone = zones(pool, policy)
        first: dict[str | None, int] = {}
        for host in others:
            first.setdefault(zone[host.id], len(first))
        others = sorted(others, key=lambda h: first[zone[h.id]])
    return sorted(others, key=lambda h: h.id != master)


def _move(migration: Migration) -> Move:
    vm = migration.vm
    return Move(vm.id, vm.name, migration.source, migration.dest, vm.memory)


def _blocked(vms: list[VM]) -> str:
    return ", ".join(f"{vm.name} ({'; '.join(b.reason for b in vm.blockers)})" for vm in vms)


@dataclass(frozen=True)
class _Selection:
    turns: list[Turn]
    skipped: list[SkippedHost]  # in run order, whatever the reason
    at_target: list[SkippedHost]
    pinned: dict[str, list[VM]]  # running unmovable VMs by host, on hosts below the target


def _select(pool: Pool, policy: Policy, order: list[Host]) -> _Selection:
    """Decide, host by host in run order, who is upgraded and what happens to pinned VMs."""
    resident: dict[str, list[VM]] = {h.id: [] for h in pool.hosts}
    for vm in pool.vms:
        if vm.running and vm.host in resident:
            resident[vm.host].append(vm)
    chosen = _Selection([], [], [], {})
    for host in order:
        done = _nothing_to_do(host, policy)
        if done is not None:
            gone = SkippedHost(host.id, host.name, done)
            chosen.at_target.append(gone)
            chosen.skipped.append(gone)
            continue
        if in_place(host, policy):
            # Its VMs stay where they run: nothing moves for it, nothing is stopped.
            chosen.turns.append(Turn(host, stay=tuple(resident[host.id]), in_place=True))
            continue
        stuck = [vm for vm in resident[host.id] if vm.blockers]
        if stuck:
            chosen.pinned[host.id] = stuck
        if stuck and policy.unmovable == "skip-host":
            reason = f"{noun(len(stuck), 'VM')} that cannot move: {_blocked(stuck)}"
            chosen.skipped.append(SkippedHost(host.id, host.name, reason))
            continue
        restart = policy.unmovable == "shutdown-restart"
        chosen.turns.append(
            Turn(host, stop=tuple(stuck) if restart else (), stay=() if restart else tuple(stuck))
        )
    return chosen


def upgrading(host: Host, policy: Policy) -> bool:
    """Whether the host is below the target version: a major upgrade, not a patch."""
    target = policy.target_version
    return target is not None and version_key(host.version) < version_key(target)


def _nothing_to_do(host: Host, policy: Policy) -> str | None:
    """Why the host is skipped, or None when it has work: an upgrade, or updates pending
    (a host that cannot tell what is pending is patched, unless at the target)."""
    target = policy.target_version
    if upgrading(host, policy):
        return None
    at = ""
    if target is not None:
        relation = "newer than" if version_key(host.version) > version_key(target) else "already at"
        at = f"{host.version} is {relation} target {target}"
        if host.pending is None:
            return at
    if host.pending is not None and not host.pending.updates:
        return f"nothing pending{'; ' + at if at else ''}"
    return None


def in_place(host: Host, policy: Policy) -> bool:
    """Whether the host is patched where it runs, its VMs left alone: what it has pending
    needs neither a reboot nor its VMs moved (a livepatch, a toolstack restart), and the
    policy reboots only when required."""
    pending = host.pending
    return (
        pending is not None
        and bool(pending.updates)
        and not pending.evacuate
        and policy.reboot == "if-required"
        and policy.update == "xapi"
        and not upgrading(host, policy)
    )


def plan(
    pool: Pool, policy: Policy, now: float | None = None, unfinished: UnfinishedRun | None = None
) -> Plan:
    """Plan the run: order, skips, batches, every VM's place at every step, checks, estimate.
    `unfinished`: a run of this pool the journal holds that nothing carries on."""
    order = run_order(pool, policy)
    chosen = _select(pool, policy, order)
    turns, skipped, at_target = chosen.turns, chosen.skipped, chosen.at_target
    target = version_key(policy.target_version) if policy.target_version else None

    new_version = target if target is not None else UNKNOWN_UPGRADE
    host_rank = {h.id: i for i, h in enumerate(order)}
    skipped_ids = {s.host for s in skipped}
    simulation = Simulation(
        layout=Layout.of(pool, {h.id: version_key(h.version) for h in pool.hosts}, policy.headroom),
        strategy=policy.strategy,
        new_version=new_version,
        rank={vm.id: i for i, vm in enumerate(pool.vms)},
        host_rank=host_rank,
        upgraded={s.host: None for s in at_target},
        final={h.id: None for h in order if h.id in skipped_ids},
        eligible={h.id: None for h in order if h.enabled and h.live},
    )
    master = master_id(pool)
    alone = [t.host.id for t in turns if t.host.id == master]
    alone += [t.host.id for t in turns if t.host.id != master][: max(0, policy.canary)]
    zone = zones(pool, policy)
    auto = policy.max_parallel_hosts == "auto"
    limit = len(turns) if auto else max(1, int(policy.max_parallel_hosts))
    simulation.run(turns, limit, alone, zone)

    staging = prestage.decide(pool, policy, any(upgrading(t.host, policy) for t in turns))
    # A host that was not pre-staged downloads its updates while out of service.
    download = policy.download_seconds if staging.method == "none" else 0.0
    # XenServer's host.apply_updates is a blocking pool operation (xen-api
    # xapi_pool_helpers.ml): a batch's hosts install one after another.
    serial = policy.update == "xapi" and pool.flavor == "xenserver"
    batches, downtime = _batches(
        simulation.outcomes, policy, host_rank, zone, download, serial_installs=serial
    )
    phase = prestage.phase_seconds(staging, policy, len(turns))
    found: list[Check] = [
        *checks.host_checks(pool),
        checks.ha_check(pool, policy),
        checks.lock_check(pool, now, unfinished),
        *checks.version_checks(pool, policy, [t.host for t in turns], at_target),
        *checks.installer_checks(pool, policy, [t.host for t in turns]),
        *checks.master_check(pool, policy, skipped),
        *checks.unmovable_checks(chosen.pinned, {h.id: h for h in pool.hosts}, policy, downtime),
        *checks.capacity_checks(simulation.outcomes, pool, policy.headroom),
        *checks.return_checks(simulation.outcomes, pool),
    ]
    where = simulation.layout.where
    steps = [step for batch in batches for step in batch.steps]
    moves = [move for step in steps for move in (*step.evacuate, *step.restore)]
    return Plan(
        pool=pool,
        policy=policy,
        batches=tuple(batches),
        checks=tuple(found),
        skipped=tuple(skipped),
        final_layout=tuple((vm.id, where[vm.id]) for vm in pool.vms if vm.id in where),
        migrations=len(moves),
        bytes_moved=sum(m.memory for m in moves),
        estimate_seconds=phase + sum(b.estimate_seconds for b in batches),
        concurrency=concurrency(simulation.stops, policy, len(turns), serial),
        prestage=staging,
    )


def concurrency(
    stops: list[Stop], policy: Policy, turns: int, serial_installs: bool = False
) -> Concurrency:
    """The largest batch, and the sentence that says why the plan took that many."""
    found = _concurrency(stops, policy, turns)
    if serial_installs and found.hosts > 1:
        return Concurrency(
            found.hosts,
            found.reason + "; their installs go one at a time (XenServer's apply_updates"
            " holds the pool), their reboots and migrations overlap",
        )
    return found


def _concurrency(stops: list[Stop], policy: Policy, turns: int) -> Concurrency:
    largest = max((stop.size for stop in stops), default=1)
    room = f" with {policy.headroom:.0%} headroom" if policy.headroom else ""
    at_once = f"up to {count(largest, 'host')} at once"
    memory = next((s for s in stops if s.reason == "memory" and s.next_host), None)
    why_not_more = ""
    if memory is not None and memory.next_host is not None:
        adding = f"; adding {memory.next_host.name} to a batch of {count(memory.size, 'host')}"
        vm = memory.homeless
        why_not_more = (
            f"{adding} would leave {vm.name} ({format_gib(vm.memory)}) no place"
            if vm is not None
            else f"{adding} would need {format_gib(memory.short)} more than is free"
        )
    # The master and the canaries always go alone: only zones are worth saying.
    also = "; no batch spans two zones" if any(s.reason == "zone" for s in stops) else ""
    if policy.max_parallel_hosts == "auto":
        if any(s.homeless is not None and s.next_host is None for s in stops):
            reason = f"auto: {at_once}; even alone, a host's VMs find no place{room}"
            return Concurrency(largest, reason + " (see the capacity check)")
        if memory is None:
            reason = f"auto: {at_once}, every VM keeps a place{room} even then"
            if largest == turns:
                reason = f"auto: all {count(largest, 'host')} at once, every VM keeps a place{room}"
        else:
            reason = f"auto: {at_once}, the largest batch that leaves every VM a place{room}"
        return Concurrency(largest, reason + why_not_more + also)
    asked = int(policy.max_parallel_hosts)
    reason = f"{at_once}: rollup_max_parallel_hosts is {asked}"
    if largest < asked and memory is not None:
        reason += why_not_more
    return Concurrency(largest, reason + also)


def _batches(
    outcomes: list[BatchOutcome],
    policy: Policy,
    host_rank: dict[str, int],
    zone: dict[str, str | None],
    download: float = 0.0,
    serial_installs: bool = False,
) -> tuple[list[Batch], dict[str, float]]:
    """Turn the simulation's outcomes into Batches, and each host's pinned-VM downtime."""
    batches: list[Batch] = []
    downtime: dict[str, float] = {}
    ranked: list[str] = []  # every host in run order: the same for every batch
    for index, outcome in enumerate(outcomes):
        steps: list[HostStep] = []
        for turn in outcome.turns:
            host = turn.host
            evacuate = tuple(_move(m) for m in outcome.evacuate[host.id])
            restore = tuple(_move(m) for m in outcome.restore[host.id])
            seconds = download + (
                policy.patch_seconds if turn.in_place else step_seconds(evacuate, restore, policy)
            )
            if turn.stop:
                # Pinned VMs are stopped before the evacuation and started after the reboot.
                downtime[host.id] = (
                    migration_seconds((m.memory for m in evacuate), policy)
                    + download
                    + policy.patch_seconds
                    + policy.reboot_seconds
                )
            stopped = tuple(vm.id for vm in turn.stop)
            steps.append(
                HostStep(
                    host=host.id,
                    host_name=host.name,
                    version_before=host.version,
                    evacuate=evacuate,
                    restore=restore,
                    stop=stopped,
                    start=stopped,
                    estimate_seconds=seconds,
                    pending=host.pending,
                    in_place=turn.in_place,
                    upgrade=upgrading(host, policy),
                    zone=zone.get(host.id),
                )
            )
        ranked = ranked or sorted(outcome.memory_after, key=lambda h: host_rank[h])
        batches.append(
            Batch(
                index=index,
                steps=tuple(steps),
                memory_after=tuple(
                    zip(ranked, map(outcome.memory_after.__getitem__, ranked), strict=True)
                ),
                memory_peak=tuple(
                    zip(ranked, map(outcome.memory_peak.__getitem__, ranked), strict=True)
                ),
                estimate_seconds=max((s.estimate_seconds for s in steps), default=0.0)
                + (policy.patch_seconds * (len(steps) - 1) if serial_installs else 0.0),
            )
        )
    return batches, downtime
