"""Random mutations of a valid lab inventory: rollup accepts it, refuses it, or says why.

A mutation drops variables, gives them the wrong type, junk or unicode strings or huge
numbers, or adds unknown rollup_* names, in the pool group or on one host. Whatever comes
out, `rollup plan` must exit 0 (a feasible plan), 3 (checks refuse it) or 2 (bad input,
one line, no traceback): never an internal error.

The bulk goes through `rollup.inventory.build` on the lab inventory's own Ansible listings
(mutated as Ansible would list the mutated file), then the same steps `rollup plan` takes;
a handful goes through the real CLI with ansible-inventory reading a mutated YAML file.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollup import cli, planner, policy
from rollup.errors import BadInput, RollupError
from rollup.inventory import build, match_hosts, select_pool
from rollup.inventory_listing import Listing, list_inventory
from rollup.model import Pool
from rollup.session import open_session
from tests.badinput.conftest import lab_inventory, pool_group
from tests.rollout.conftest import Lab

HOST_KEYS = (
    *policy.HOST_VARIABLES,
    "ansible_host",
    "ansible_port",
    "ansible_user",
    "ansible_connection",
    "ansible_ssh_private_key_file",
)
PLAUSIBLE = (
    "return", "upgraded-first", "least-loaded", "fail", "skip-host", "shutdown-restart",
    "refuse", "always", "if-required", "pause", "abort", "continue", "8.3.0", "8.2.1",
    "22:00-04:00", "00:00-00:00", "1GiB", "500MiB", "5m", "90s", "0", "1", "-1", "2",
    "true", "no", "xenapi", "libvirt", "h1", "h2", "99999999999999", "",
)  # fmt: skip

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.text(max_size=24),
    st.sampled_from(PLAUSIBLE),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.sampled_from(["hosts", "vms", "speed", "bogus"]), st.integers(), max_size=2),
)
pool_keys = st.one_of(
    st.sampled_from(policy.POOL_VARIABLES), st.from_regex(r"rollup_[a-z]{1,10}", fullmatch=True)
)
host_keys = st.sampled_from(HOST_KEYS)
# (where, key, value): where is "group" or a host name; value None-marker drops the key.
DROP = object()
mutations = st.lists(
    st.one_of(
        st.tuples(st.just("group"), pool_keys, st.one_of(values, st.just(DROP))),
        st.tuples(st.sampled_from(["h1", "h2"]), host_keys, st.one_of(values, st.just(DROP))),
        st.tuples(st.sampled_from(["h1", "h2"]), pool_keys, values),
    ),
    min_size=1,
    max_size=3,
)


@pytest.fixture(scope="module")
def listing(lab: Lab) -> Listing:
    return list_inventory(str(lab.inventory), None)


@pytest.fixture(scope="module")
def pool(lab: Lab) -> Pool:
    return lab.snapshot()


def mutated_listing(listing: Listing, changes: list[tuple[str, str, Any]]) -> Listing:
    """The listings ansible-inventory would give for the inventory with `changes`."""
    exported = copy.deepcopy(dict(listing.exported))
    merged = copy.deepcopy(dict(listing.merged))
    group = next(name for name in listing.group_names() if name not in ("all", "ungrouped"))
    hosts = listing.members(group)
    own = exported["_meta"]["hostvars"]
    for where, key, value in changes:
        places = [exported[group].setdefault("vars", {})] if where == "group" else [own[where]]
        targets = hosts if where == "group" else [where]
        for variables in places:
            if value is DROP:
                variables.pop(key, None)
            else:
                variables[key] = value
        for host in targets:
            if where == "group" and key in own[host]:
                continue  # the host's own value wins
            if value is DROP:
                merged["_meta"]["hostvars"][host].pop(key, None)
            else:
                merged["_meta"]["hostvars"][host][key] = value
    return Listing(exported=exported, merged=merged)


def plan_exit_code(lab: Lab, pool: Pool, listing: Listing, state: Path) -> int:
    """What `rollup plan` does after reading the listing, as an exit code."""
    try:
        config = select_pool(build(str(lab.inventory), listing, environ={}), None)
        if config.lab is not None:
            return 0  # it would start a lab of its own: not this test's business
        connection = config.connection
        assert connection is not None
        lab_connection = (lab.running.url, lab.running.user, lab.running.password)
        if (connection.url, connection.user, connection.password) != lab_connection:
            if not (urlsplit(connection.url).hostname or "").startswith("127."):
                return 2  # a well-formed URL elsewhere: never contacted from a test
            session = open_session(config, state)  # refused, or refuses the credentials
            session.close()
        match_hosts(config.hosts, pool.hosts, source=config.source)
        plan = planner.plan(pool, config.policy, now=time.time())
        return 0 if plan.feasible else 3
    except BadInput as error:
        assert "\n" not in error.message and error.message.strip(), error.message
        assert "Traceback" not in error.message
        assert lab.running.password not in error.message
        return 2
    except RollupError as error:
        return error.exit_code


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=mutations)
def test_any_mutation_plans_or_is_refused_or_is_one_line_of_bad_input(
    changes, lab: Lab, pool: Pool, listing: Listing, tmp_path: Path
):
    code = plan_exit_code(lab, pool, mutated_listing(listing, changes), tmp_path / "state")
    assert code in (0, 2, 3)


def test_the_unmutated_inventory_plans(lab: Lab, pool: Pool, listing: Listing, tmp_path: Path):
    assert plan_exit_code(lab, pool, listing, tmp_path / "state") == 0


def yaml_with(lab: Lab, changes: list[tuple[str, str, Any]]) -> str:
    data = lab_inventory(lab)
    group = pool_group(data)
    for where, key, value in changes:
        variables = group.setdefault("vars", {}) if where == "group" else group["hosts"][where]
        if value is DROP:
            variables.pop(key, None)
        else:
            variables[key] = value
    return yaml.safe_dump(data, allow_unicode=True)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=mutations)
def test_mutated_inventories_through_the_cli(
    changes, lab: Lab, pool: Pool, tmp_path_factory: pytest.TempPathFactory, capsys
):
    directory = tmp_path_factory.mktemp("mutated")
    path = directory / "inventory.yml"
    path.write_text(yaml_with(lab, changes), encoding="utf-8")
    code = cli.main(["plan", str(path), "--format", "json", "--state-dir", str(directory / "s")])
    captured = capsys.readouterr()
    assert code in (0, 2, 3), captured.err
    assert "Traceback" not in captured.err
    if code == 2:
        assert len(captured.err.splitlines()) == 1, captured.err
        assert captured.out == ""
    assert lab.running.password not in captured.err
    after = lab.snapshot()
    assert after == pool and after.lock is None
