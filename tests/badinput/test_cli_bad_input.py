"""Broken inventories, variables, flags and credentials through the real CLI.

Each one exits 2 with exactly one line on stderr that names the problem and the fix, no
traceback, and leaves the lab pool exactly as it was: no lock, no run in the journal.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollup import cli
from rollup.run.journal import Journal
from tests.badinput.conftest import lab_inventory, pool_group
from tests.installed import ROLLUP
from tests.rollout.conftest import Lab, env

ANSIBLE_VAULT = Path(sys.executable).parent / "ansible-vault"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again once the socket goes


def with_vars(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        pool_group(data)["vars"].update(changes)

    return edit


def without_var(name: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        del pool_group(data)["vars"][name]

    return edit


def extra_host(data: dict[str, Any]) -> None:
    pool_group(data)["hosts"]["h9"] = {"ansible_host": "192.0.2.99", "ansible_connection": "local"}


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]  # {inv} is the inventory, {dir} the test's directory
    expected: tuple[str, ...]  # fragments of the one line: the problem and its fix
    edit: Callable[[dict[str, Any]], None] | None = None  # applied to the lab's inventory
    text: str | None = None  # the inventory's text instead, written to `name`
    name: str = "inventory.yml"
    environ: dict[str, str] = field(default_factory=dict)


CASES = {
    "missing_file": Case(
        ("plan", "{dir}/nowhere.yml"), ("nowhere.yml: inventory not found", "give an inventory")
    ),
    "unparsable_yaml": Case(
        ("plan", "{inv}"),
        ("cannot read the inventory", "YAML", "fix it until `ansible-inventory -i"),
        text="all:\n  children: [\n",
    ),
    "unparsable_ini": Case(
        ("run", "{inv}", "--yes", "--no-tui"),
        ("cannot read the inventory", "fix it until `ansible-inventory -i"),
        text="[pool\nh1 ansible_host=127.0.0.1\n",
        name="inventory.ini",
    ),
    "unknown_rollup_variable": Case(
        ("run", "{inv}", "--yes", "--no-tui"),
        ("rollup_canry is not a variable rollup knows", "did you mean rollup_canary?"),
        edit=with_vars(rollup_canry=1),
    ),
    "parallel_hosts_not_a_number": Case(
        ("plan", "{inv}"),
        (
            "rollup_max_parallel_hosts must be auto or a whole number",
            "e.g. rollup_max_parallel_hosts: auto",
        ),
        edit=with_vars(rollup_max_parallel_hosts="lots"),
    ),
    "canary_is_a_list": Case(
        ("run", "{inv}", "--yes", "--no-tui"),
        ("rollup_canary must be a whole number", "e.g. rollup_canary: 0"),
        edit=with_vars(rollup_canary=[1]),
    ),
    "version_as_a_float": Case(
        ("plan", "{inv}"),
        ("rollup_target_version must be a quoted string", 'e.g. rollup_target_version: "8.3"'),
        edit=with_vars(rollup_target_version=8.3),
    ),
    "url_is_a_number": Case(
        ("plan", "{inv}"),
        ("rollup_api_url must be the pool master's http(s) URL", "e.g. rollup_api_url: https://"),
        edit=with_vars(rollup_api_url=42),
    ),
    "verify_tls_is_junk": Case(
        ("plan", "{inv}"),
        ("rollup_verify_tls must be true or false", "e.g. rollup_verify_tls: true"),
        edit=with_vars(rollup_verify_tls="sometimes"),
    ),
    "playbook_missing": Case(
        ("run", "{inv}", "--yes", "--no-tui"),
        ("rollup_playbook names", "which does not exist", "fix the path"),
        edit=with_vars(rollup_playbook="no/such/playbook.yml"),
    ),
    "pool_variable_null_on_one_host": Case(
        ("plan", "{inv}"),
        ("rollup_verify_tls differs between hosts h1 and h2", "set pool variables once"),
        edit=lambda data: pool_group(data)["hosts"]["h1"].update(rollup_verify_tls=None),
    ),
    "no_password_anywhere": Case(
        ("plan", "{inv}"),
        ("rollup_api_password is not set", "export ROLLUP_API_PASSWORD"),
        edit=without_var("rollup_api_password"),
    ),
    "max_parallel_hosts_many": Case(
        ("plan", "{inv}", "--max-parallel-hosts", "many"),
        ("--max-parallel-hosts must be auto or a whole number", "e.g. --max-parallel-hosts auto"),
    ),
    "pools_naming_no_pool": Case(
        ("run", "{inv}", "--yes", "--no-tui", "--pools", "lab_1,nope"),
        ("no pool 'nope' (pools: ", "name pools of the inventory, or --pools all"),
    ),
    "pool_and_pools": Case(
        ("run", "{inv}", "--yes", "--no-tui", "--pool", "x", "--pools", "all"),
        ("--pool and --pools both name pools", "use --pools a,b (or all) alone"),
    ),
    "max_parallel_pools_zero": Case(
        ("run", "{inv}", "--yes", "--no-tui", "--pools", "all", "--max-parallel-pools", "0"),
        ("--max-parallel-pools must be 1 or more, got 0", "e.g. --max-parallel-pools 2"),
    ),
    "window_out_of_the_day": Case(
        ("run", "{inv}", "--yes", "--no-tui", "--window", "25:00-26:00"),
        ('--window must be a daily window "HH:MM-HH:MM"', "e.g. --window 22:00-04:00"),
    ),
    "strategy_fast": Case(
        ("run", "{inv}", "--yes", "--no-tui", "--strategy", "fast"),
        ("--strategy must be one of return, upgraded-first", "e.g. --strategy return"),
    ),
    "format_unknown": Case(
        ("plan", "{inv}", "--format", "xml"),
        ("argument --format: invalid choice: 'xml'", "see rollup plan --help"),
    ),
    "unknown_flag": Case(
        ("run", "{inv}", "--yes", "--max-paralel-hosts", "2"),
        ("unrecognized arguments: --max-paralel-hosts", "see rollup --help"),
    ),
    "wrong_password": Case(
        ("run", "{inv}", "--yes", "--no-tui"),
        ("refused the credentials for user root", "check rollup_api_user / rollup_api_password"),
        edit=with_vars(rollup_api_password="not-the-lab-password"),
    ),
    "wrong_password_from_the_environment": Case(
        ("plan", "{inv}"),
        ("refused the credentials", "ROLLUP_API_PASSWORD"),
        edit=without_var("rollup_api_password"),
        environ={"ROLLUP_API_PASSWORD": "not-the-lab-password"},
    ),
    "closed_port": Case(
        ("run", "{inv}", "--yes", "--no-tui"),
        ("is unreachable (connection refused)", "check the pool master's address"),
        edit=lambda data: with_vars(rollup_api_url=f"http://127.0.0.1:{closed_port()}")(data),
    ),
    "host_matching_nothing_in_the_pool": Case(
        ("run", "{inv}", "--yes", "--no-tui"),
        ("host h9: matches no pool host (pool hosts: h1, h2, h3)", "set rollup_host_name"),
        edit=extra_host,
    ),
    "host_matching_nothing_when_planning": Case(
        ("plan", "{inv}", "--format", "json"),
        ("host h9: matches no pool host", "set rollup_host_name"),
        edit=extra_host,
    ),
    "resume_unknown_run": Case(
        ("resume", "20200101-000000-dead"),
        ("there is no run 20200101-000000-dead", "see `rollup history`"),
    ),
    "approve_unknown_run": Case(
        ("approve", "20200101-000000-dead"),
        ("no run 20200101-000000-dead", "see `rollup history`"),
    ),
    "lab_with_no_hosts": Case(("lab", "up", "--hosts", "0", "--dir", "{dir}/lab"), ("--hosts",)),
}


def write_case(case: Case, lab: Lab, directory: Path) -> Path:
    path = directory / case.name
    if case.text is not None:
        path.write_text(case.text)
    else:
        data = lab_inventory(lab)
        if case.edit is not None:
            case.edit(data)
        path.write_text(yaml.safe_dump(data))
    return path


def argv(case: Case, inventory: Path, directory: Path, state: Path) -> list[str]:
    args = [arg.format(inv=inventory, dir=directory) for arg in case.argv]
    return args if args[0] == "lab" else [*args, "--state-dir", str(state)]


def assert_one_line(stderr: str, expected: tuple[str, ...], *, secret: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    assert secret not in stderr


def assert_untouched(lab: Lab, before: Any, state: Path) -> None:
    after = lab.snapshot()
    assert after == before
    assert after.lock is None
    assert not (state / "journal.sqlite").exists() or Journal(state).runs() == []


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    name: str, lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
):
    case = CASES[name]
    monkeypatch.delenv("ROLLUP_API_PASSWORD", raising=False)
    for key, value in case.environ.items():
        monkeypatch.setenv(key, value)
    inventory = write_case(case, lab, tmp_path)
    state = tmp_path / "state"
    before = lab.snapshot()
    try:
        code = cli.main(argv(case, inventory, tmp_path, state))
    except SystemExit as exit_:  # argparse's way out
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert_one_line(captured.err, case.expected, secret=lab.running.password)
    assert captured.out == ""
    assert_untouched(lab, before, state)
    assert not (tmp_path / "lab").exists()


@pytest.mark.parametrize(
    "name",
    ["unparsable_yaml", "wrong_password", "host_matching_nothing_in_the_pool", "lab_with_no_hosts"],
)
def test_the_rollup_command_says_it_in_one_line_too(name: str, lab: Lab, tmp_path: Path):
    """The same through `python -m rollup`: nothing else (logging, warnings) reaches stderr."""
    case = CASES[name]
    inventory = write_case(case, lab, tmp_path)
    state = tmp_path / "state"
    before = lab.snapshot()
    done = subprocess.run(
        [ROLLUP, *argv(case, inventory, tmp_path, state)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=env(),
    )
    assert done.returncode == 2, done.stderr
    assert_one_line(done.stderr, case.expected, secret=lab.running.password)
    assert done.stdout == ""
    assert_untouched(lab, before, state)


@pytest.fixture(scope="module")
def vaulted_inventory(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("vaulted")
    vault_password = directory / "vault-pass"
    vault_password.write_text("the-vault-password\n")
    encrypted = subprocess.run(
        [str(ANSIBLE_VAULT), "encrypt_string", "--vault-password-file", str(vault_password)],
        input=lab.running.password,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = lab_inventory(lab)
    pool_group(data)["vars"]["rollup_api_password"] = "VAULTED"
    text = yaml.safe_dump(data).replace("VAULTED", encrypted.replace("\n", "\n" + " " * 8))
    path = directory / "vaulted.yml"
    path.write_text(text)
    return path, vault_password


@pytest.mark.parametrize(
    ("vault_file", "expected"),
    [
        (None, ("rollup_api_password is vaulted", "give the vault password")),
        ("wrong", ("cannot decrypt", "vault password")),
        ("missing", ("vault password file not found", "fix --vault-password-file")),
    ],
)
def test_a_vaulted_password_that_cannot_be_opened_is_one_line(
    vault_file, expected, lab: Lab, vaulted_inventory, tmp_path: Path, capsys
):
    inventory, _ = vaulted_inventory
    args = ["run", str(inventory), "--yes", "--no-tui", "--state-dir", str(tmp_path / "state")]
    if vault_file == "wrong":
        (tmp_path / "wrong").write_text("not-the-vault-password\n")
    if vault_file:
        args += ["--vault-password-file", str(tmp_path / vault_file)]
    before = lab.snapshot()
    code = cli.main(args)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert_one_line(captured.err, expected, secret=lab.running.password)
    assert_untouched(lab, before, tmp_path / "state")


def test_the_vaulted_inventory_itself_is_good(lab: Lab, vaulted_inventory, tmp_path, capsys):
    """The three failures above are about the vault, not a broken inventory."""
    inventory, vault_password = vaulted_inventory
    args = ["plan", str(inventory), "--format", "json", "--state-dir", str(tmp_path / "state")]
    code = cli.main([*args, "--vault-password-file", str(vault_password)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert lab.running.password not in captured.out + captured.err
