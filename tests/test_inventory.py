"""Loading real inventories through ansible-inventory: YAML, INI, group_vars, vault, env."""

from __future__ import annotations

import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest

from rollup import bundled
from rollup.config import inventory, listing
from rollup.errors import BadInput
from rollup.lab import LabSpec
from rollup.model import GiB, Host, MiB, Window
from rollup.remote import RemoteHost

FIXTURES = Path(__file__).parent / "inventories"
REPO = Path(__file__).parent.parent
PATCH = str((FIXTURES / "playbooks" / "patch.yml").absolute())
ANSIBLE_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def yaml_pool() -> inventory.PoolConfig:
    loaded = inventory.load(str(FIXTURES / "pool.yml"), environ={})
    return inventory.select_pool(loaded, None)


@pytest.fixture(scope="module")
def ini_pool() -> inventory.PoolConfig:
    loaded = inventory.load(str(FIXTURES / "pool.ini"), environ={})
    return inventory.select_pool(loaded, None)


@pytest.fixture(scope="module")
def grouped() -> inventory.Inventory:
    return inventory.load(str(FIXTURES / "grouped"), environ={"ROLLUP_API_PASSWORD": "from-env"})


def hosts_by_name(pool: inventory.PoolConfig) -> dict[str, inventory.InventoryHost]:
    return {host.name: host for host in pool.hosts}


# --- YAML ---------------------------------------------------------------------------------


def test_yaml_pool_is_the_group_that_sets_the_api_url(yaml_pool):
    assert yaml_pool.name == "xcp"
    assert yaml_pool.driver == "xenapi"
    assert yaml_pool.lab is None
    assert yaml_pool.source.endswith("pool.yml")


def test_yaml_policy_comes_from_group_variables(yaml_pool):
    policy = yaml_pool.policy
    assert policy.target_version == "8.3.0"
    assert policy.strategy == "upgraded-first"
    assert policy.order == "least-loaded"
    assert policy.max_parallel_hosts == 2
    assert policy.parallel_migrations == 4
    assert policy.unmovable == "skip-host"
    assert policy.ha == "refuse"
    assert policy.reboot == "if-required"
    assert policy.canary == 1
    assert policy.on_failure == "abort"
    assert policy.window == Window(time(22, 0), time(4, 30))
    assert policy.migration_bandwidth == 500 * MiB
    assert policy.patch_seconds == 90.0
    assert policy.reboot_seconds == 360.0
    assert policy.host_timeout_seconds == 3600.0


def test_playbook_paths_are_absolute_and_relative_to_the_inventory(yaml_pool):
    assert yaml_pool.policy.playbook == PATCH
    assert yaml_pool.policy.pre_host_playbook == str(
        (FIXTURES / "playbooks" / "pre.yml").absolute()
    )
    assert yaml_pool.policy.post_host_playbook is None


def test_host_order_is_inventory_order(yaml_pool):
    assert yaml_pool.policy.host_order == ("xcp-3", "xcp-1", "xcp-2")
    assert [host.name for host in yaml_pool.hosts] == ["xcp-3", "xcp-1", "xcp-2"]


def test_hosts_outside_the_pool_group_are_not_pool_hosts(yaml_pool):
    assert "grafana" not in hosts_by_name(yaml_pool)


def test_connection_uses_inventory_credentials_and_variables_from_all(yaml_pool):
    connection = yaml_pool.connection
    assert connection is not None
    assert connection.url == "https://xcp-1.example.org"
    assert connection.user == "admin"
    assert connection.password == "inventory-password"
    assert connection.verify_tls is False  # set on `all`, inherited by the pool
    assert connection.ca_file is None


def test_remote_host_is_built_from_ansible_variables(yaml_pool):
    hosts = hosts_by_name(yaml_pool)
    third = hosts["xcp-3"]
    assert third.pool_host_name == "xenhost-3"
    assert third.address == "10.0.0.13"
    assert third.remote.address == "10.0.0.13"
    assert third.remote.port == 2222
    assert third.remote.user == "admin"
    assert third.remote.key_file == str(Path("~/.ssh/xcp").expanduser())
    assert third.remote.check_host_keys is True
    assert third.remote.connection == "ssh"


def test_paramiko_connection_counts_as_ssh_and_user_defaults_to_root(yaml_pool):
    first = hosts_by_name(yaml_pool)["xcp-1"]
    assert first.remote.connection == "ssh"
    assert first.remote.user == "root"
    assert first.remote.port == 22
    assert first.pool_host_name is None


def test_host_without_ansible_host_is_reached_by_its_name(yaml_pool):
    second = hosts_by_name(yaml_pool)["xcp-2"]
    assert second.address is None
    assert second.remote.address == "xcp-2"
    assert second.remote.connection == "local"
    assert second.remote.check_host_keys is False
    assert second.remote.environment == {"ROLLUP_LAB_HOST": "h2", "ROLLUP_LAB_PORT": "8022"}


def test_ansible_vars_are_the_hosts_merged_variables(yaml_pool):
    merged = hosts_by_name(yaml_pool)["xcp-3"].remote.ansible_vars
    assert merged["ansible_port"] == 2222
    assert merged["rollup_api_url"] == "https://xcp-1.example.org"  # from the group
    assert merged["rollup_verify_tls"] is False  # from all


# --- INI and a directory with group_vars ---------------------------------------------------


def test_ini_inventory_gives_the_same_pool(ini_pool, yaml_pool):
    assert ini_pool.name == yaml_pool.name
    assert ini_pool.policy.host_order == yaml_pool.policy.host_order
    assert ini_pool.policy.target_version == "8.3.0"
    assert ini_pool.policy.max_parallel_hosts == 2
    assert ini_pool.policy.window == yaml_pool.policy.window
    assert ini_pool.policy.migration_bandwidth == 500 * MiB
    assert ini_pool.policy.playbook == PATCH
    assert ini_pool.connection is not None
    assert ini_pool.connection.verify_tls is False  # INI's "false" is a string


def test_ini_host_variables_are_read(ini_pool):
    hosts = hosts_by_name(ini_pool)
    assert hosts["xcp-3"].remote.port == 2222
    assert hosts["xcp-3"].pool_host_name == "xenhost-3"
    assert hosts["xcp-2"].remote.check_host_keys is False


def test_directory_with_group_vars_gives_one_pool_per_leaf_group(grouped):
    assert [pool.name for pool in grouped.pools] == ["pool_a", "pool_b"]


def test_parent_group_settings_are_shared_and_pools_override_them(grouped):
    pool_a = inventory.select_pool(grouped, "pool_a")
    pool_b = inventory.select_pool(grouped, "pool_b")
    assert pool_a.policy.canary == 0  # group_vars/pool_a.yml wins over group_vars/xcp.yml
    assert pool_b.policy.canary == 1
    assert pool_a.policy.playbook == PATCH
    assert pool_b.connection is not None
    assert pool_b.connection.url == "https://b1.example.org"


def test_host_vars_files_are_read(grouped):
    a1 = hosts_by_name(inventory.select_pool(grouped, "pool_a"))["a1"]
    assert a1.address == "10.1.0.1"
    assert a1.pool_host_name == "xen-a1"


def test_environment_fills_a_missing_password(grouped):
    pool = inventory.select_pool(grouped, "pool_a")
    assert pool.connection is not None
    assert pool.connection.password == "from-env"
    assert pool.connection.user == "root"


# --- pool selection -------------------------------------------------------------------------


def test_select_pool_needs_a_name_when_there_are_several(grouped):
    with pytest.raises(BadInput) as raised:
        inventory.select_pool(grouped, None)
    message = str(raised.value)
    assert "pool_a" in message and "pool_b" in message and "--pool" in message
    assert str(FIXTURES / "grouped") in message


def test_select_pool_rejects_an_unknown_name_and_suggests_one(grouped):
    with pytest.raises(BadInput) as raised:
        inventory.select_pool(grouped, "pool-a")
    assert "no pool 'pool-a'" in str(raised.value)
    assert "did you mean --pool pool_a?" in str(raised.value)


def test_select_pool_takes_the_only_pool_without_a_name(yaml_pool):
    assert yaml_pool.name == "xcp"


# --- credentials from the environment ---------------------------------------------------------


def test_inventory_credentials_win_over_the_environment():
    loaded = inventory.load(
        str(FIXTURES / "pool.yml"),
        environ={"ROLLUP_API_USER": "env-user", "ROLLUP_API_PASSWORD": "env-password"},
    )
    connection = loaded.pools[0].connection
    assert connection is not None
    assert (connection.user, connection.password) == ("admin", "inventory-password")


def test_environment_fills_user_and_password(tmp_path):
    path = tmp_path / "env.yml"
    path.write_text(
        "xcp:\n  vars: {rollup_driver: xenapi, rollup_api_url: 'https://m'}\n  hosts: {h1: }\n"
    )
    loaded = inventory.load(
        str(path), environ={"ROLLUP_API_USER": "ops", "ROLLUP_API_PASSWORD": "pw-from-env"}
    )
    connection = loaded.pools[0].connection
    assert connection is not None
    assert (connection.user, connection.password) == ("ops", "pw-from-env")
    assert "pw-from-env" not in repr(loaded)


# --- vault --------------------------------------------------------------------------------------

CLEAR_PASSWORD = "s3cret-vaulted-xapi-password"


@pytest.fixture(scope="module")
def vaulted(tmp_path_factory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("vault")
    password_file = directory / "vault-pass"
    password_file.write_text("vault-password-for-tests\n")
    encrypted = subprocess.run(
        [
            str(ANSIBLE_BIN / "ansible-vault"),
            "encrypt_string",
            "--vault-password-file",
            str(password_file),
            CLEAR_PASSWORD,
            "--name",
            "rollup_api_password",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    indented = "".join("      " + line + "\n" for line in encrypted.splitlines())
    path = directory / "vaulted.yml"
    path.write_text(
        "xcp:\n"
        "  vars:\n"
        "      rollup_driver: xenapi\n"
        "      rollup_api_url: https://xcp.example.org\n"
        f"{indented}"
        "  hosts:\n"
        "    h1: {ansible_host: 10.9.0.1}\n"
    )
    return path, password_file


def test_vaulted_password_is_decrypted_and_never_shown(vaulted):
    path, password_file = vaulted
    loaded = inventory.load(str(path), vault_password_file=str(password_file), environ={})
    pool = loaded.pools[0]
    assert pool.connection is not None
    assert pool.connection.password == CLEAR_PASSWORD
    assert CLEAR_PASSWORD not in repr(loaded)
    assert CLEAR_PASSWORD not in str(loaded)
    # Nor does the patch playbook: ansible-runner writes its inventory to disk in clear.
    assert "rollup_api_password" not in pool.hosts[0].remote.ansible_vars
    assert CLEAR_PASSWORD not in repr(pool.hosts)


def test_vaulted_value_without_a_vault_password_is_bad_input(vaulted):
    path, _ = vaulted
    with pytest.raises(BadInput) as raised:
        inventory.load(str(path), environ={})
    message = str(raised.value)
    assert "rollup_api_password is vaulted" in message
    assert "--vault-password-file" in message
    assert "\n" not in message


def test_wrong_vault_password_is_bad_input(vaulted, tmp_path):
    path, _ = vaulted
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not-the-password\n")
    with pytest.raises(BadInput) as raised:
        inventory.load(str(path), vault_password_file=str(wrong), environ={})
    assert "vault password" in str(raised.value)
    assert CLEAR_PASSWORD not in str(raised.value)


# --- flags -----------------------------------------------------------------------------------


def test_flag_overrides_win_over_group_variables(tmp_path):
    other = tmp_path / "other.yml"
    other.write_text("- hosts: all\n  tasks: []\n")
    loaded = inventory.load(
        str(FIXTURES / "pool.yml"),
        environ={},
        overrides={
            "rollup_max_parallel_hosts": "3",  # as argparse hands it over
            "rollup_canary": None,  # a flag not given
            "rollup_window": "01:00-02:00",
            "rollup_strategy": "return",
            "rollup_playbook": str(other),
            "rollup_api_password": "from-flag",
        },
    )
    pool = loaded.pools[0]
    assert pool.policy.max_parallel_hosts == 3
    assert pool.policy.canary == 1  # the inventory's value stays
    assert pool.policy.window == Window(time(1, 0), time(2, 0))
    assert pool.policy.strategy == "return"
    assert pool.policy.playbook == str(other)
    assert pool.connection is not None
    assert pool.connection.password == "from-flag"


@pytest.mark.parametrize(
    ("overrides", "flag_names", "expected"),
    [
        pytest.param(
            {"rollup_max_parallel_hosts": "many"},
            {"rollup_max_parallel_hosts": "--max-parallel-hosts"},
            "--max-parallel-hosts must be auto or a whole number from 1 to 1000, got 'many'; "
            "e.g. --max-parallel-hosts auto",
            id="bad_number_names_the_flag",
        ),
        pytest.param(
            {"rollup_on_failure": "stop"},
            None,
            "--on-failure must be one of pause, abort, continue, got 'stop'; "
            "e.g. --on-failure pause",
            id="flag_name_derived_from_variable",
        ),
        pytest.param(
            {"rollup_host_name": "x"},
            None,
            "--host-name is not a pool setting rollup can take from a flag",
            id="host_variable_is_not_a_flag",
        ),
    ],
)
def test_bad_flag_values_name_the_flag(overrides, flag_names, expected):
    with pytest.raises(BadInput) as raised:
        inventory.load(
            str(FIXTURES / "pool.yml"), environ={}, overrides=overrides, flag_names=flag_names
        )
    assert str(raised.value) == expected
    assert "rollup_" not in str(raised.value)


# --- reading while ansible-runner is still being imported -------------------------------------

# ansible_runner/__init__.py replaces its `plugins` submodule with a dict only at its very
# end, after a slow entry-point scan; a thread that imports ansible_runner.interface in
# that window runs with the module and fails "'module' object is not iterable". Seen in
# CI when one of the two listing threads imported ansible-runner while the other ran.
CONCURRENT_IMPORT = """
import importlib.metadata, sys, threading, time
scanning = threading.Event()
real_scan = importlib.metadata.entry_points
def slow_scan(**selection):
    scanning.set()
    time.sleep(1.5)
    return real_scan(**selection)
importlib.metadata.entry_points = slow_scan
threading.Thread(target=lambda: __import__("ansible_runner"), daemon=True).start()
scanning.wait()
from rollup.config.listing import list_inventory
print(" ".join(list_inventory(sys.argv[1], None).all_hosts()))
"""


def test_an_inventory_is_read_while_ansible_runner_is_half_imported():
    source = str(FIXTURES / "pool.yml")
    shown = subprocess.run(
        [sys.executable, "-c", CONCURRENT_IMPORT, source],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{ANSIBLE_BIN}:/usr/bin:/bin"},
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.split() == listing.list_inventory(source, None).all_hosts()


# --- the shipped inventories ---------------------------------------------------------------------


def test_lab_inventory_describes_a_lab_pool():
    # It names no playbook: should it be patched by one, it takes the lab's, from where
    # rollup is installed; its own way is XAPI's (the updater plugin), and no target
    # version: a patch of what is pending.
    playbook = Path(bundled.playbook("lab-patch.yml"))
    loaded = inventory.load(str(REPO / "inventories" / "lab.yml"), environ={})
    pool = inventory.select_pool(loaded, None)
    assert pool.name == "lab"
    assert pool.connection is None
    assert pool.lab == LabSpec(hosts=4, vms=24, seed=1, speed=20)
    assert pool.policy.target_version is None
    assert pool.policy.update == "xapi"
    assert pool.policy.reboot == "if-required"
    assert pool.policy.host_order == ("h1", "h2", "h3", "h4")
    assert all(not host.remote.check_host_keys for host in pool.hosts)
    assert pool.policy.unmovable == "shutdown-restart"
    assert pool.policy.playbook == str(playbook)
    assert playbook.is_file()


def test_example_inventory_describes_a_three_host_xcpng_pool():
    playbook = Path(bundled.playbook("xcp-ng-update.yml"))
    loaded = inventory.load(
        str(REPO / "inventories" / "example-xcpng.yml"),
        environ={"ROLLUP_API_PASSWORD": "pw"},
    )
    pool = inventory.select_pool(loaded, None)
    assert len(pool.hosts) == 3
    assert pool.connection is not None
    assert pool.connection.url.startswith("https://")
    assert pool.connection.user == "root"
    assert pool.policy.canary == 1
    assert pool.policy.window is not None
    assert pool.policy.migration_bandwidth == GiB
    assert pool.policy.playbook == str(playbook)
    assert playbook.is_file()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example-xcpng.yml", {"update": "xapi", "updates": "planned", "reboot": "if-required"}),
        ("example-xenserver.yml", {"update": "xapi", "restart_vms": False}),
        ("example-playbook.yml", {"update": "playbook", "reboot": "if-required"}),
        (
            "example-major-upgrade.yml",
            {
                "update": "xapi",
                "target_version": "8.3.0",
                "installer_url": "http://repo.example.org/xcp-ng/8.3/",
            },
        ),
        ("lab-upgrade.yml", {"update": "xapi", "target_version": None}),
        (
            "example-proxmox.yml",
            {
                "update": "playbook",
                "reboot": "if-required",
                "unmovable": "fail",
                "playbook": bundled.playbook("proxmox-update.yml"),
            },
        ),
        ("lab-proxmox.yml", {"update": "playbook", "unmovable": "shutdown-restart"}),
    ],
)
def test_every_shipped_inventory_loads_with_the_policy_its_comments_promise(name, expected):
    loaded = inventory.load(str(REPO / "inventories" / name), environ={"ROLLUP_API_PASSWORD": "pw"})
    policy = inventory.select_pool(loaded, None).policy
    assert {key: getattr(policy, key) for key in expected} == expected


# --- matching inventory hosts to pool hosts (pure) ----------------------------------------------


def pool_host(name: str, address: str) -> Host:
    return Host(
        id=f"uuid-{name}",
        name=name,
        address=address,
        memory_total=64 * GiB,
        memory_overhead=GiB,
        memory_free=32 * GiB,
        version="8.2.1",
        platform_version="3.4.0",
        enabled=True,
        live=True,
        is_master=False,
        boot_mark="1",
    )


def inventory_host(
    name: str, pool_host_name: str | None = None, address: str | None = None
) -> inventory.InventoryHost:
    remote = RemoteHost(name=name, address=address or name)
    return inventory.InventoryHost(name, pool_host_name, address, remote)


POOL_HOSTS = (
    pool_host("xen1", "10.0.0.1"),
    pool_host("xen2", "10.0.0.2"),
    pool_host("xen3", "xen3.example.org"),
)


def test_match_by_rollup_host_name_by_name_and_by_address():
    matched = inventory.match_hosts(
        [
            inventory_host("first", pool_host_name="xen1"),
            inventory_host("xen2"),
            inventory_host("third", address="xen3.example.org"),
        ],
        POOL_HOSTS,
    )
    assert matched == {"first": "uuid-xen1", "xen2": "uuid-xen2", "third": "uuid-xen3"}


def test_match_by_inventory_name_as_address():
    matched = inventory.match_hosts([inventory_host("10.0.0.2")], POOL_HOSTS)
    assert matched == {"10.0.0.2": "uuid-xen2"}


def test_rollup_host_name_is_the_only_thing_matched_when_set():
    with pytest.raises(BadInput) as raised:
        inventory.match_hosts([inventory_host("xen1", pool_host_name="xen9")], POOL_HOSTS)
    message = str(raised.value)
    assert "host xen1" in message and "'xen9'" in message
    assert "xen1, xen2, xen3" in message


def test_unmatched_host_is_named_with_the_fix():
    with pytest.raises(BadInput) as raised:
        inventory.match_hosts([inventory_host("nowhere")], POOL_HOSTS, source="inv.yml")
    assert str(raised.value) == (
        "inv.yml: host nowhere: matches no pool host (pool hosts: xen1, xen2, xen3); "
        "set rollup_host_name to the pool's name for it"
    )


def test_two_inventory_hosts_for_one_pool_host_are_refused():
    with pytest.raises(BadInput) as raised:
        inventory.match_hosts(
            [inventory_host("xen1"), inventory_host("alias", address="10.0.0.1")], POOL_HOSTS
        )
    assert "xen1 and alias both match pool host xen1" in str(raised.value)
