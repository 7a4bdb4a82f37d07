"""Properties of every plan, checked by replaying its moves independently of the planner."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import pools, pools_and_policies

from rollup.model import Plan, Policy, Pool, version_key
from rollup.plan.planner import plan

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NEWEST = (2**31,)


def replay(result: Plan) -> dict[str, str]:
    """Execute the plan's moves in order on a model of the pool; assert every promise.

    Returns where each running VM ends. Memory counts on a destination from the start of a
    migration and leaves its source only when the phase (evacuation or restore) is over,
    which is the most conservative reading of concurrent migrations.
    """
    pool = result.pool
    target = result.policy.target_version
    capacity = {h.id: h.capacity for h in pool.hosts}
    # What an evacuation may fill a host to: the headroom stays free.
    limit = {h.id: int(h.capacity * (1 - result.policy.headroom)) for h in pool.hosts}
    version = {h.id: version_key(h.version) for h in pool.hosts}
    usable = {h.id for h in pool.hosts if h.enabled and h.live}
    memory = {vm.id: vm.memory for vm in pool.vms}
    running = {vm.id for vm in pool.vms if vm.running}
    where = {vm.id: vm.host for vm in pool.vms if vm.running}
    used = dict.fromkeys(capacity, 0)
    for vm_id, host in where.items():
        used[host] += memory[vm_id]

    def arrive(vm_id: str, source: str, dest: str, landing: set[str]) -> None:
        assert vm_id in running, "a halted VM is never moved"
        assert where[vm_id] == source, f"{vm_id} is not on {source}"
        assert dest in usable, f"{dest} is disabled or not live"
        assert version[dest] >= version[source], f"{vm_id}: newer {source} to older {dest}"
        used[dest] += memory[vm_id]
        assert used[dest] <= capacity[dest], f"{dest} over-committed by {vm_id}"
        where[vm_id] = dest
        landing.add(dest)

    for batch in result.batches:
        batch_hosts = {step.host for step in batch.steps}
        peak = dict.fromkeys(capacity, 0)
        for host in capacity:
            peak[host] = used[host]
        departed: list[tuple[str, str]] = []
        landing: set[str] = set()
        for step in batch.steps:
            for vm_id in step.stop:
                assert where.pop(vm_id) == step.host
                used[step.host] -= memory[vm_id]
            for move in step.evacuate:
                assert move.source == step.host
                assert move.dest not in batch_hosts, "a batch host is never a target"
                assert move.memory == memory[move.vm]
                arrive(move.vm, move.source, move.dest, landing)
                assert used[move.dest] <= limit[move.dest], f"{move.dest}: headroom used"
                departed.append((move.source, move.vm))
        for host, vm_id in departed:
            used[host] -= memory[vm_id]
        for host in capacity:
            peak[host] = max(peak[host], used[host])
        if result.feasible:
            left = [v for v, h in where.items() if h in batch_hosts]
            assert not left, f"VMs left on hosts being upgraded: {left}"
        for host in batch_hosts:
            version[host] = version_key(target) if target else NEWEST
            usable.add(host)
        departed = []
        for step in batch.steps:
            for vm_id in step.start:
                where[vm_id] = step.host
                used[step.host] += memory[vm_id]
                assert used[step.host] <= capacity[step.host]
            for move in step.restore:
                assert move.dest == step.host
                # Home again: it fitted there before, headroom or not.
                arrive(move.vm, move.source, move.dest, landing)
                departed.append((move.source, move.vm))
        for host, vm_id in departed:
            used[host] -= memory[vm_id]
        assert dict(batch.memory_after) == used, "memory_after disagrees with the replay"
        reported = dict(batch.memory_peak)
        for host in capacity:
            peak[host] = max(peak[host], used[host])
            assert reported[host] >= peak[host], f"memory_peak of {host} too low"
        for host in landing:
            assert reported[host] <= capacity[host], f"memory_peak of {host} over capacity"
    assert set(where) == running, "every running VM has a place"
    assert dict(result.final_layout) == where
    return where


@PROPERTY
@given(pools_and_policies())
def test_replaying_any_plan_never_over_commits_a_host_nor_moves_newer_to_older(case):
    pool, policy = case
    replay(plan(pool, policy))


@PROPERTY
@given(pools(pinned=False, broken_hosts=False), st.data())
def test_nearly_full_pools_are_planned_or_refused_for_capacity_never_over_committed(pool, data):
    policy = data.draw(
        st.builds(
            Policy,
            max_parallel_hosts=st.sampled_from([1, 2, 4, "auto"]),
            headroom=st.sampled_from([0.0, 0.2]),
        )
    )
    result = plan(pool, policy)
    replay(result)
    failing = {c.name for c in result.checks if c.status == "fail"}
    assert failing <= {"capacity"}


@PROPERTY
@given(pools_and_policies())
def test_master_goes_first_and_alone_and_batches_respect_max_parallel(case):
    pool, policy = case
    result = plan(pool, policy)
    upgraded = [step.host for step in result.steps]
    if pool.master in upgraded:
        assert upgraded[0] == pool.master
        assert len(result.batches[0].steps) == 1
    limit = len(upgraded) if policy.max_parallel_hosts == "auto" else policy.max_parallel_hosts
    for batch in result.batches:
        assert 1 <= len(batch.steps) <= limit
        assert len({step.zone for step in batch.steps}) == 1, "a batch spans two zones"
    assert result.concurrency.hosts == max((len(b.steps) for b in result.batches), default=1)
    skipped = {s.host for s in result.skipped}
    assert skipped.isdisjoint(upgraded)
    assert skipped | set(upgraded) == {h.id for h in pool.hosts}


@PROPERTY
@given(pools_and_policies())
def test_with_return_every_vm_ends_where_it_started(case):
    pool, policy = case
    result = plan(pool, Policy(**{**policy.__dict__, "strategy": "return"}))
    if not any(c.name == "return" for c in result.checks):
        assert dict(result.final_layout) == {vm.id: vm.host for vm in pool.vms if vm.running}


def _strategy(policy: Policy, strategy: str) -> Policy:
    return Policy(**{**policy.__dict__, "strategy": strategy})


@PROPERTY
@given(pools_and_policies())
def test_upgraded_first_never_migrates_more_than_return(case):
    pool, policy = case
    back = plan(pool, _strategy(policy, "return"))
    first = plan(pool, _strategy(policy, "upgraded-first"))
    if back.feasible and first.feasible:
        assert first.migrations <= back.migrations


@PROPERTY
@given(pools_and_policies())
def test_same_input_gives_the_same_plan(case):
    pool, policy = case
    assert plan(pool, policy) == plan(pool, policy)


def test_an_empty_pool_gives_an_empty_plan():
    pool = Pool("p", "p", "xenapi", None, False, (), ())
    assert plan(pool, Policy()).batches == ()
