"""Random mutations of a valid lab inventory: rollup accepts it, refuses it, or says why.

A mutation drops variables, gives them the wrong type, junk or unicode strings or huge
numbers, or adds unknown rollup_* names, in the pool group or on one host. Whatever comes
out, `rollup plan` must exit 0 (a feasible plan), 3 (checks refuse it) or 2 (bad input,
one line, no traceback): never an internal error.

Both tests run the real `rollup plan` in-process (`rollup.cli.main`) against one idle lab
pool and judge what a user would see: the exit code, the JSON plan, the one line on stderr.
The bulk hands it the lab inventory's own Ansible listing, mutated as Ansible would list
the mutated file; a handful has ansible-inventory read a mutated YAML file. Failures found
are kept in hypothesis-db/ beside this file, which is committed.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from rollup import cli
from rollup.commands.parser import build_parser
from rollup.config import inventory, policy
from rollup.config.listing import Listing, list_inventory
from rollup.model import Pool
from tests.badinput.conftest import lab_inventory, pool_group
from tests.rollout.conftest import Lab

# Committed with the tests: a failure hypothesis finds anywhere replays everywhere.
DATABASE = DirectoryBasedExampleDatabase(Path(__file__).parent / "hypothesis-db")
PARSER = functools.cache(build_parser)

HOST_KEYS = (
    *policy.host_variables(),
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
    st.sampled_from(policy.pool_variables()), st.from_regex(r"rollup_[a-z]{1,10}", fullmatch=True)
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


def elsewhere(url: object) -> bool:
    """Whether `url` is a pool API URL off loopback, where no test may knock."""
    parts = urlsplit(url.strip()) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https"):
        return False
    return not (parts.hostname or "127.").startswith("127.")


def reaches_beyond_the_lab(listing: Listing) -> bool:
    """Whether `rollup plan` would start a lab of its own, reach libvirt hosts over SSH or
    a pool API elsewhere: none of that is this test's business, nor quick."""
    for variables in listing.merged["_meta"]["hostvars"].values():
        url = variables.get("rollup_api_url")
        if url is None and (
            "rollup_lab" in variables or variables.get("rollup_driver") == "libvirt"
        ):
            return True
        if elsewhere(url):
            return True
    return False


def rollup_plan(inventory: Path, state: Path) -> tuple[int, str, str]:
    """The real `rollup plan`, in-process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["plan", str(inventory), "--format", "json", "--state-dir", str(state)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_plans_or_is_refused_or_is_one_line_of_bad_input(
    lab: Lab, code: int, out: str, err: str
) -> None:
    assert code in (0, 2, 3), err
    assert "Traceback" not in err
    assert lab.running.password not in err + out
    if code == 2:
        assert out == ""
        assert err.endswith("\n") and len(err.splitlines()) == 1, err
        assert err.startswith("rollup: ") and err.strip() != "rollup:", err
    else:
        assert json.loads(out)["feasible"] is (code == 0), out


# Values that once split an error in two, and their kin: each always runs again.
LINE_BREAKS = (
    [("group", "rollup_playbook", "patch\nplaybook.yml")],
    [("group", "rollup_pre_host_playbook", "pre\r\nhook.yml")],
    [("group", "rollup_strategy", "\x1b[31mreturn")],
    [("h1", "ansible_connection", "ssh\tlocal")],
    [("h2", "rollup_host_name", "h2\n")],
)


def with_examples(cases: tuple[list[tuple[str, str, Any]], ...]) -> Any:
    def decorate(test: Any) -> Any:
        for changes in reversed(cases):
            test = example(changes=changes)(test)
        return test

    return decorate


@settings(
    max_examples=500,
    deadline=None,
    database=DATABASE,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@with_examples(LINE_BREAKS)
@given(changes=mutations)
def test_any_mutation_plans_or_is_refused_or_is_one_line_of_bad_input(
    changes, lab: Lab, listing: Listing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    mutated = mutated_listing(listing, changes)
    assume(not reaches_beyond_the_lab(mutated))
    # The real CLI, but Ansible's listing of the mutated file is made here: running
    # ansible-inventory for each of 500 mutations would take minutes. And argparse takes
    # longer to build rollup's parser than rollup takes to plan: it is built once.
    monkeypatch.setattr(inventory, "list_inventory", lambda source, password_file: mutated)
    monkeypatch.setattr(cli, "build_parser", PARSER)
    code, out, err = rollup_plan(lab.inventory, tmp_path / "state")
    assert_plans_or_is_refused_or_is_one_line_of_bad_input(lab, code, out, err)


def test_the_unmutated_inventory_plans(lab: Lab, tmp_path: Path):
    code, out, err = rollup_plan(lab.inventory, tmp_path / "state")
    assert code == 0, err
    assert json.loads(out)["feasible"] is True


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
    max_examples=7,  # and the @example: eight runs of ansible-inventory, as ever
    deadline=None,
    database=DATABASE,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(changes=LINE_BREAKS[0])
@given(changes=mutations)
def test_mutated_inventories_through_the_cli(
    changes, lab: Lab, pool: Pool, listing: Listing, tmp_path_factory: pytest.TempPathFactory
):
    assume(not reaches_beyond_the_lab(mutated_listing(listing, changes)))
    directory = tmp_path_factory.mktemp("mutated")
    path = directory / "inventory.yml"
    path.write_text(yaml_with(lab, changes), encoding="utf-8")
    code, out, err = rollup_plan(path, directory / "s")
    assert_plans_or_is_refused_or_is_one_line_of_bad_input(lab, code, out, err)
    after = lab.snapshot()
    assert after == pool and after.lock is None
