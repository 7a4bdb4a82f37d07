"""Every kind of bad inventory is BadInput with one line naming file, variable and fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rollup.config import inventory
from rollup.errors import BadInput

PLAYBOOK = str((Path(__file__).parent / "inventories" / "playbooks" / "patch.yml").absolute())

GOOD_VARS = (
    "      rollup_driver: xenapi\n"
    "      rollup_api_url: https://xcp.example.org\n"
    "      rollup_api_password: pool-password\n"
    f"      rollup_playbook: {PLAYBOOK}\n"
)


def pool(extra_vars: str = "", hosts: str = "    h1:\n    h2:\n", name: str = "xcp") -> str:
    """A one-pool YAML inventory with good settings plus `extra_vars` (6-space indent)."""
    return f"{name}:\n  vars:\n{GOOD_VARS}{extra_vars}  hosts:\n{hosts}"


@dataclass(frozen=True)
class Case:
    files: dict[str, str]  # relative path → content; the first one is the inventory
    expected: tuple[str, ...]  # fragments the message must contain
    absent: tuple[str, ...] = ()  # fragments it must not contain (secrets)
    environ: dict[str, str] = field(default_factory=dict)


CASES = {
    "unparsable_yaml": Case(
        {"inv.yml": "xcp:\n  hosts: [unclosed\n"},
        ("cannot read the inventory", "YAML", "ansible-inventory -i"),
    ),
    "unparsable_ini": Case(
        {"inv.ini": "[xcp\nh1\n"},
        ("cannot read the inventory", "ansible-inventory -i"),
    ),
    "unknown_group_variable_suggests_the_close_name": Case(
        {"inv.yml": pool("      rollup_canry: 1\n")},
        ("group xcp: rollup_canry is not a variable rollup knows", "did you mean rollup_canary?"),
    ),
    "unknown_host_variable_suggests_the_close_name": Case(
        {"inv.yml": pool(hosts="    h1: {rollup_host_nmae: xen1}\n")},
        ("host h1: rollup_host_nmae", "did you mean rollup_host_name?"),
    ),
    "unknown_variable_far_from_any_name": Case(
        {"inv.yml": pool("      rollup_banana: yellow\n")},
        ("rollup_banana is not a variable rollup knows", "rename it"),
    ),
    "unknown_variable_on_a_group_that_is_not_a_pool": Case(
        {"inv.yml": pool() + "other:\n  vars: {rollup_stratgy: return}\n  hosts: {x1: }\n"},
        ("group other: rollup_stratgy", "did you mean rollup_strategy?"),
    ),
    "whole_number_given_a_word": Case(
        {"inv.yml": pool("      rollup_canary: many\n")},
        ("group xcp: rollup_canary must be a whole number", "'many'", "e.g. rollup_canary: 0"),
    ),
    "parallel_hosts_zero": Case(
        {"inv.yml": pool("      rollup_max_parallel_hosts: 0\n")},
        (
            "rollup_max_parallel_hosts must be auto or a whole number from 1 to 1000, got 0",
            "e.g. rollup_max_parallel_hosts: auto",
        ),
    ),
    "headroom_over_the_limit": Case(
        {"inv.yml": pool("      rollup_headroom: 95%\n")},
        (
            "rollup_headroom must be a percentage from 0 to 90, got '95%'",
            'e.g. rollup_headroom: "10%"',
        ),
    ),
    "zone_given_as_a_list": Case(
        {"inv.yml": pool("      rollup_zone: [a, b]\n")},
        ("rollup_zone must be a non-empty string", "e.g. rollup_zone: rack-a"),
    ),
    "boolean_given_as_number_of_hosts": Case(
        {"inv.yml": pool("      rollup_canary: true\n")},
        ("rollup_canary must be a whole number", "got True"),
    ),
    "choice_misspelt": Case(
        {"inv.yml": pool("      rollup_strategy: retrun\n")},
        ("rollup_strategy must be one of return, upgraded-first", "did you mean return?"),
    ),
    "window_with_impossible_hour": Case(
        {"inv.yml": pool('      rollup_window: "25:00-01:00"\n')},
        ("rollup_window must be a daily window", 'e.g. rollup_window: "22:00-04:00"'),
    ),
    "bandwidth_that_is_not_bytes": Case(
        {"inv.yml": pool("      rollup_migration_bandwidth: fast\n")},
        ("rollup_migration_bandwidth must be bytes per second", "1GiB"),
    ),
    "timeout_negative": Case(
        {"inv.yml": pool("      rollup_host_timeout: -5\n")},
        ("rollup_host_timeout must be a positive number of seconds",),
    ),
    "target_version_unquoted": Case(
        {"inv.yml": pool("      rollup_target_version: 8.3\n")},
        ("rollup_target_version must be a quoted string", 'e.g. rollup_target_version: "8.3"'),
    ),
    "verify_tls_not_a_boolean": Case(
        {"inv.yml": pool("      rollup_verify_tls: maybe\n")},
        ("rollup_verify_tls must be true or false",),
    ),
    "playbook_missing": Case(
        {"inv.yml": pool("      rollup_pre_host_playbook: missing.yml\n")},
        ("rollup_pre_host_playbook names", "missing.yml, which does not exist", "relative"),
    ),
    "api_url_not_http": Case(
        {"inv.yml": pool("      rollup_api_url: ftp://xcp\n")},
        ("rollup_api_url must be the pool master's http(s) URL",),
    ),
    "api_url_missing": Case(
        {"inv.yml": "xcp:\n  vars: {rollup_driver: xenapi}\n  hosts: {h1: }\n"},
        ("group xcp: rollup_api_url is not set", "set rollup_api_url: https://"),
    ),
    "driver_missing": Case(
        {"inv.yml": "xcp:\n  vars: {rollup_api_url: 'https://m'}\n  hosts: {h1: }\n"},
        ("group xcp: rollup_driver is not set", "rollup_driver: xenapi"),
    ),
    "driver_unknown": Case(
        {"inv.yml": pool().replace("rollup_driver: xenapi", "rollup_driver: vmware")},
        ("rollup_driver must be one of xenapi, libvirt, proxmox, got 'vmware'",),
    ),
    "password_missing_everywhere": Case(
        {
            "inv.yml": "xcp:\n  vars: {rollup_driver: xenapi, rollup_api_url: 'https://m'}\n"
            "  hosts: {h1: }\n"
        },
        ("group xcp: rollup_api_password is not set", "ROLLUP_API_PASSWORD"),
    ),
    "password_of_the_wrong_type_is_not_quoted": Case(
        {
            "inv.yml": pool().replace(
                "rollup_api_password: pool-password", "rollup_api_password: 918273645"
            )
        },
        ("rollup_api_password must be a quoted string", "(hidden)"),
        absent=("918273645",),
    ),
    "password_that_differs_between_hosts_is_not_quoted": Case(
        {"inv.yml": pool(hosts="    h1:\n    h2: {rollup_api_password: other-secret}\n")},
        (
            "host h2: rollup_api_password differs between hosts h1 and h2",
            "set pool variables once, on group xcp",
        ),
        absent=("other-secret", "pool-password"),
    ),
    "pool_without_hosts": Case(
        {"inv.yml": pool(hosts="    {}\n")},
        ("group xcp: the pool has no hosts", "list the pool's hosts"),
    ),
    "no_pool_at_all": Case(
        {"inv.yml": "web:\n  hosts: {w1: }\n"},
        ("no pool in the inventory", "rollup_driver: xenapi"),
    ),
    "host_in_two_pools": Case(
        {"inv.yml": pool(hosts="    h1:\n") + pool(hosts="    h1:\n", name="other")},
        ("host h1 is in pools ", "a host belongs to one pool"),
    ),
    "lab_with_an_api_url": Case(
        {"inv.yml": pool("      rollup_lab: {hosts: 2}\n")},
        ("rollup_api_url is set together with rollup_lab",),
    ),
    "lab_with_an_unknown_key": Case(
        {
            "inv.yml": "lab:\n  vars:\n    rollup_driver: xenapi\n    rollup_lab: {hostz: 3}\n"
            "  hosts: {h1: }\n"
        },
        ("group lab: rollup_lab has an unknown key 'hostz'", "did you mean hosts?"),
    ),
    "lab_with_a_bad_value": Case(
        {
            "inv.yml": "lab:\n  vars:\n    rollup_driver: xenapi\n    rollup_lab: {speed: 0}\n"
            "  hosts: {h1: }\n"
        },
        ("rollup_lab key speed must be a positive number", "e.g. {speed: 1.0}"),
    ),
    "lab_env_not_a_mapping": Case(
        {"inv.yml": pool(hosts="    h1: {rollup_lab_env: [a, b]}\n")},
        ("host h1: rollup_lab_env must map environment variable names",),
    ),
    "ansible_port_not_a_port": Case(
        {"inv.yml": pool(hosts="    h1: {ansible_port: 70000}\n")},
        ("host h1: ansible_port must be a port 1-65535, got 70000",),
    ),
    "ansible_connection_rollup_cannot_use": Case(
        {"inv.yml": pool(hosts="    h1: {ansible_connection: winrm}\n")},
        ("host h1: ansible_connection is 'winrm'", "use ssh"),
    ),
    "directory_with_a_bad_group_vars_file": Case(
        {
            "dir/hosts.yml": "xcp:\n  hosts: {h1: }\n",
            "dir/group_vars/xcp.yml": GOOD_VARS.replace("      ", "")
            + "rollup_unmovable: ignore\n",
        },
        ("group xcp: rollup_unmovable must be one of fail, skip-host, shutdown-restart",),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_inventory_is_one_line_naming_file_variable_and_fix(case: Case, tmp_path: Path):
    for name, text in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    first = next(iter(case.files))
    source = str(tmp_path / (first.split("/")[0] if "/" in first else first))
    with pytest.raises(BadInput) as raised:
        inventory.load(source, environ=case.environ)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(source + ":"), message
    assert "; " in message, f"no fix in {message!r}"
    for fragment in case.expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    for fragment in case.absent:
        assert fragment not in message, f"{fragment!r} leaked into {message!r}"


def test_missing_inventory_names_the_path(tmp_path: Path):
    missing = str(tmp_path / "nowhere.yml")
    with pytest.raises(BadInput) as raised:
        inventory.load(missing)
    assert str(raised.value) == (
        f"{missing}: inventory not found; give an inventory file or directory"
    )


def test_missing_vault_password_file_names_the_flag(tmp_path: Path):
    path = tmp_path / "inv.yml"
    path.write_text(pool())
    with pytest.raises(BadInput) as raised:
        inventory.load(str(path), vault_password_file=str(tmp_path / "nope"))
    assert "vault password file not found; fix --vault-password-file" in str(raised.value)
