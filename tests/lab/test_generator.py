"""The generator builds the same realistic pool from the same seed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollup.errors import BadInput
from rollup.lab.generator import generate, guest_capacity
from rollup.lab.xapi.pool import LabPool
from rollup.model import GiB


def fill(layout) -> float:
    running = sum(v.memory + v.memory_overhead for v in layout.vms if v.power_state == "Running")
    return running / sum(guest_capacity(h.memory_total) for h in layout.hosts)


def test_the_same_seed_gives_the_same_pool():
    assert generate(hosts=4, vms=30, seed=7) == generate(hosts=4, vms=30, seed=7)
    assert generate(hosts=4, vms=30, seed=7) != generate(hosts=4, vms=30, seed=8)


def test_hosts_are_named_and_addressed_in_order():
    layout = generate(hosts=3, vms=9, seed=1, address_prefix="127.0.20.")
    assert [h.name for h in layout.hosts] == ["h1", "h2", "h3"]
    assert [h.address for h in layout.hosts] == ["127.0.20.1", "127.0.20.2", "127.0.20.3"]
    assert layout.master == "h1"
    assert {h.version for h in layout.hosts} == {"8.2.1"}


@settings(max_examples=60, deadline=None)
@given(
    hosts=st.integers(min_value=2, max_value=8),
    per_host=st.integers(min_value=4, max_value=12),
    seed=st.integers(min_value=0, max_value=10**6),
)
def test_pools_are_half_to_three_quarters_full_and_no_host_overflows(hosts, per_host, seed):
    layout = generate(hosts=hosts, vms=hosts * per_host, seed=seed)
    # Two hosts can only take turns holding everything when each is at most half full.
    assert (0.5 if hosts > 2 else 0.4) <= fill(layout) <= 0.75
    capacity = guest_capacity(layout.hosts[0].memory_total)
    for h in layout.hosts:
        load = sum(
            v.memory + v.memory_overhead for v in layout.vms if v.host == h.name
        )  # fmt: skip
        assert load <= capacity
    assert all(GiB <= v.memory <= 16 * GiB for v in layout.vms)
    uuids = [v.uuid for v in layout.vms] + [h.uuid for h in layout.hosts]
    assert len(uuids) == len(set(uuids))
    assert len({v.name for v in layout.vms}) == len(layout.vms)


def test_a_few_vms_are_pinned_and_a_few_halted():
    layout = generate(hosts=4, vms=40, seed=3)
    pinned = [v for v in layout.vms if v.pin]
    halted = [v for v in layout.vms if v.power_state == "Halted"]
    assert 1 <= len(pinned) <= 6 and 1 <= len(halted) <= 6
    assert all(v.pin_host for v in pinned)
    assert all(v.host is None for v in halted)
    assert all(v.affinity == v.host for v in layout.vms if v.host)


def test_a_generated_pool_runs():
    pool = LabPool.generate(hosts=3, vms=12, seed=5, address_prefix="127.0.20.", speed=1000)
    try:
        assert all(pool.memory_free(ref) >= 0 for ref in pool.hosts)
        assert len([v for v in pool.vms.values() if v.is_control_domain]) == 3
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hosts": 0}, "lab pool: hosts=0 is out of range; use 1 to 250 hosts"),
        ({"vms": -1}, "lab pool: vms=-1 is negative; use 0 or more VMs"),
        ({"fill": (0.8, 0.5)}, "lab pool: fill=(0.8, 0.5) is not a range in (0, 1)"),
    ],
)
def test_bad_generator_arguments_name_the_fix(kwargs, message):
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate(**kwargs)


@settings(max_examples=150, deadline=None)
@given(
    hosts=st.integers(min_value=2, max_value=8),
    per_host=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=10**6),
)
def test_every_host_of_a_generated_pool_can_be_evacuated_onto_the_others(hosts, per_host, seed):
    from rollup.model import VM, Host, Policy, Pool
    from rollup.plan.planner import plan

    layout = generate(hosts=hosts, vms=hosts * per_host, seed=seed)
    capacity = guest_capacity(layout.hosts[0].memory_total)
    pool = Pool(
        id="p", name="p", driver="xenapi", master="h1", ha_enabled=False,
        hosts=tuple(
            Host(h.name, h.name, h.address, capacity, 0, capacity, h.version, "3", True, True,
                 h.name == "h1", "0")
            for h in layout.hosts
        ),
        vms=tuple(
            VM(v.uuid, v.name, v.memory + v.memory_overhead, v.power_state, v.host)
            for v in layout.vms if v.pin is None
        ),
    )  # fmt: skip
    assert plan(pool, Policy(target_version="8.3.0")).feasible
