"""The rollup_* checks, without Ansible: what each accepts, and that nothing else gets by."""

from __future__ import annotations

import string
from datetime import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollup.config import inventory, policy
from rollup.errors import BadInput
from rollup.lab import LabSpec
from rollup.model import GiB, MiB, Policy, Window

HERE = Path(__file__).parent / "inventories"
INVENTORY = policy.Origin("inv.yml", "group xcp")
FLAG = policy.Origin("", flag="--the-flag")


def check(name: str, value: object, origin: policy.Origin = INVENTORY) -> object:
    return policy.check(name, value, origin, HERE)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        pytest.param("rollup_migration_bandwidth", "1GiB", GiB, id="bandwidth_gib"),
        pytest.param("rollup_migration_bandwidth", "500MiB/s", 500 * MiB, id="bandwidth_per_s"),
        pytest.param("rollup_migration_bandwidth", "1.5 GB", 1_500_000_000, id="bandwidth_gb"),
        pytest.param("rollup_migration_bandwidth", 125_000_000, 125_000_000, id="bandwidth_int"),
        pytest.param("rollup_migration_bandwidth", "1000", 1000, id="bandwidth_digits"),
        pytest.param("rollup_host_timeout", "30m", 1800.0, id="duration_minutes"),
        pytest.param("rollup_host_timeout", "1.5h", 5400.0, id="duration_hours"),
        pytest.param("rollup_patch_seconds", 90, 90.0, id="duration_number"),
        pytest.param("rollup_reboot_seconds", "45", 45.0, id="duration_string"),
        pytest.param("rollup_window", "22:00-04:30", Window(time(22), time(4, 30)), id="window"),
        pytest.param("rollup_window", "8:00 - 9:15", Window(time(8), time(9, 15)), id="window_sp"),
        pytest.param("rollup_verify_tls", "no", False, id="bool_no"),
        pytest.param("rollup_verify_tls", "True", True, id="bool_true_string"),
        pytest.param("rollup_check_host_keys", 0, False, id="bool_zero"),
        pytest.param("rollup_canary", "2", 2, id="whole_from_flag_string"),
        pytest.param("rollup_target_version", "8.2.1-beta", "8.2.1-beta", id="version"),
        pytest.param("rollup_lab", None, LabSpec(), id="lab_defaults"),
        pytest.param(
            "rollup_lab",
            {"hosts": 2, "ssh": "false", "speed": "10"},
            LabSpec(hosts=2, ssh=False, speed=10.0),
            id="lab_strings",
        ),
        pytest.param("rollup_lab_env", {"A": 1, "B": "x"}, {"A": "1", "B": "x"}, id="env"),
        pytest.param(
            "rollup_playbook",
            "playbooks/patch.yml",
            str((HERE / "playbooks" / "patch.yml").absolute()),
            id="playbook_relative",
        ),
    ],
)
def test_accepted_values(name, value, expected):
    assert check(name, value) == expected


def test_inventory_message_names_file_place_variable_and_example():
    with pytest.raises(BadInput) as raised:
        check("rollup_parallel_migrations", "lots")
    assert str(raised.value) == (
        "inv.yml: group xcp: rollup_parallel_migrations must be a whole number from 1 to 1000, "
        "got 'lots'; e.g. rollup_parallel_migrations: 1"
    )


def test_flag_message_names_the_flag_not_the_variable():
    with pytest.raises(BadInput) as raised:
        check("rollup_window", "tonight", FLAG)
    assert str(raised.value) == (
        "--the-flag must be a daily window \"HH:MM-HH:MM\" with different ends, got 'tonight'; "
        "e.g. --the-flag 22:00-04:00"
    )


def test_flag_paths_are_relative_to_the_current_directory(tmp_path):
    with pytest.raises(BadInput) as raised:
        policy.check("rollup_playbook", "gone.yml", FLAG, tmp_path)
    assert f"names {tmp_path}/gone.yml" in str(raised.value)
    assert "the current directory" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "flag"),
    [
        ("rollup_max_parallel_hosts", "--max-parallel-hosts"),
        ("rollup_on_failure", "--on-failure"),
        ("rollup_target_version", "--target-version"),
    ],
)
def test_flag_names_derive_from_variable_names(name, flag):
    assert policy.flag_for(name) == flag


def test_flag_names_given_by_the_cli_win():
    assert policy.flag_for("rollup_target_version", {"rollup_target_version": "--to"}) == "--to"


def test_unknown_variable_suggests_the_closest_known_name():
    error = policy.unknown("rollup_paralel_migrations", INVENTORY)
    assert str(error) == (
        "inv.yml: group xcp: rollup_paralel_migrations is not a variable rollup knows; "
        "did you mean rollup_parallel_migrations?"
    )


def test_every_policy_field_has_a_variable():
    built = policy.build_policy(
        {
            "rollup_host_timeout": 60.0,
            "rollup_canary": 2,
            "rollup_window": Window(time(1), time(2)),
        },
        ("h1", "h2"),
        ("playbook",),
    )
    assert built == Policy(
        host_order=("h1", "h2"),
        host_timeout_seconds=60.0,
        canary=2,
        window=Window(time(1), time(2)),
    )
    assert policy.build_policy({}, (), ("playbook",)) == Policy()


def test_a_pool_is_patched_its_drivers_own_way_unless_it_names_a_playbook():
    assert policy.build_policy({}, (), ("xapi", "playbook")).update == "xapi"
    own = {"rollup_playbook": "/site/update.yml"}
    assert policy.build_policy(own, (), ("xapi", "playbook")).update == "playbook"
    chosen = {"rollup_playbook": "/site/update.yml", "rollup_update": "xapi"}
    assert policy.build_policy(chosen, (), ("xapi", "playbook")).update == "xapi"


# --- no value gets past a check as anything but its type, or BadInput ---------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**15), max_value=10**15)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["1GiB", "22:00-04:00", "true", "auto", "8.3.0", "5m", "return", "-1"])
)
anything = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["hosts", "ssh", "seed"]), children, max_size=3
        )
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(policy.variables())), value=anything, from_flag=st.booleans())
def test_any_value_is_accepted_or_bad_input(name, value, from_flag):
    origin = FLAG if from_flag else INVENTORY
    try:
        check(name, value, origin)
    except BadInput as error:
        message = str(error)
        assert "\n" not in message
        assert message.startswith("--the-flag " if from_flag else "inv.yml: group xcp: ")
        assert "; " in message


words = st.text(alphabet=string.ascii_letters + "-_ ", min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(
        [
            "rollup_strategy",
            "rollup_order",
            "rollup_unmovable",
            "rollup_ha",
            "rollup_reboot",
            "rollup_on_failure",
            "rollup_max_parallel_hosts",
            "rollup_parallel_migrations",
            "rollup_canary",
            "rollup_window",
            "rollup_migration_bandwidth",
            "rollup_host_timeout",
            "rollup_verify_tls",
        ]
    ),
    value=words,
)
def test_words_that_are_no_valid_value_are_refused(name, value):
    valid = {
        "rollup_strategy": {"return", "upgraded-first"},
        "rollup_order": {"inventory", "least-loaded"},
        "rollup_unmovable": {"fail", "skip-host", "shutdown-restart"},
        "rollup_ha": {"disable-and-restore", "refuse"},
        "rollup_reboot": {"always", "if-required"},
        "rollup_on_failure": {"pause", "abort", "continue"},
        "rollup_verify_tls": {"true", "false", "yes", "no", "on", "off"},
    }.get(name, set())
    if value.strip().lower() in valid:
        return
    with pytest.raises(BadInput):
        check(name, value)


@settings(max_examples=200, deadline=None)
@given(value=anything)
def test_a_bad_password_is_never_quoted(value):
    try:
        check("rollup_api_password", value)
    except BadInput as error:
        shown = repr(value)
        if len(shown) > 3:
            assert shown not in str(error)


# --- the whole build, from listings shaped like ansible-inventory's ----------------------------


def listing(group_vars: dict[str, object], host_vars: dict[str, object]) -> inventory.Listing:
    merged = {**group_vars, **host_vars}
    return inventory.Listing(
        exported={
            "_meta": {"hostvars": {"h1": host_vars}},
            "all": {"children": ["ungrouped", "xcp"]},
            "xcp": {"hosts": ["h1"], "vars": group_vars},
        },
        merged={
            "_meta": {"hostvars": {"h1": merged}},
            "all": {"children": ["ungrouped", "xcp"]},
            "xcp": {"hosts": ["h1"]},
        },
    )


BASE = {"rollup_driver": "xenapi", "rollup_api_url": "https://m", "rollup_api_password": "p"}
host_variables = st.sampled_from(
    [
        "ansible_host",
        "ansible_port",
        "ansible_user",
        "ansible_connection",
        "ansible_ssh_private_key_file",
        *policy.host_variables(),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    group_vars=st.dictionaries(st.sampled_from(policy.pool_variables()), anything, max_size=4),
    host_vars=st.dictionaries(host_variables, anything, max_size=3),
)
def test_any_inventory_values_build_or_give_bad_input(group_vars, host_vars):
    try:
        built = inventory.build(
            "inv.yml", listing({**BASE, **group_vars}, host_vars), environ={}, cwd=HERE
        )
    except BadInput as error:
        assert "\n" not in str(error)
        assert str(error).startswith("inv.yml: ")
    else:
        assert built.pools[0].policy.host_order == ("h1",)
        assert "'p'" not in repr(built)
