"""An error stays one line whatever the input holds: line breaks, tabs, escape sequences.

Values echoed back are quoted and escaped as Python's repr would write them, and cut when
long; names echoed in running text keep their letters and lose only what would not print.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from rollup import cli
from rollup.config import inventory
from rollup.config.policy import Origin, check
from rollup.errors import BadInput
from rollup.text.quoting import one_line, quoted

NASTY = ["a\nb", "a\rb", "a\tb", "\x1b[31mred", "a\r\nb", "a\u2028b", "a\x85b", "a\x00b"]


def assert_one_line(message: str) -> None:
    assert len(message.splitlines()) == 1, message
    assert message.isprintable(), message


@pytest.mark.parametrize("value", NASTY)
def test_a_quoted_value_is_escaped_onto_one_line(value):
    shown = quoted(value)
    assert_one_line(shown)
    assert shown == repr(value) or shown.startswith(repr(value)[:30])


def test_a_long_value_is_cut_with_an_ellipsis():
    shown = quoted("x" * 500)
    assert len(shown) == 40 and shown.endswith("…") and shown.startswith("'xxx")


def test_a_name_keeps_its_letters_and_loses_only_what_would_not_print():
    assert one_line("pool_a") == "pool_a"
    assert one_line("pöol ✓") == "pöol ✓"
    assert one_line("a\nb\tc\x1b[0m") == "a\\nb\\tc\\x1b[0m"
    assert one_line("y" * 300, 200) == "y" * 199 + "…"


def test_escaping_twice_changes_nothing_more():
    once = one_line("a\nb")
    assert one_line(once) == once


@pytest.mark.parametrize("value", NASTY)
@pytest.mark.parametrize(
    "name", ["rollup_strategy", "rollup_window", "rollup_canary", "rollup_api_url"]
)
def test_a_bad_inventory_value_is_one_line(name, value, tmp_path):
    with pytest.raises(BadInput) as raised:
        check(name, value, Origin("inv.yml", "group pool"), tmp_path)
    assert_one_line(raised.value.message)
    assert repr(value) in raised.value.message


@pytest.mark.parametrize("value", NASTY)
def test_a_missing_playbook_with_a_line_break_is_one_line(value, tmp_path):
    with pytest.raises(BadInput) as raised:
        check("rollup_playbook", f"patch{value}.yml", Origin("inv.yml", "group pool"), tmp_path)
    message = raised.value.message
    assert_one_line(message)
    assert "which does not exist" in message


@pytest.mark.parametrize("path", ["x" * 5000, "~no-such-user-here/patch.yml", "a/" * 3000])
def test_a_path_no_file_system_takes_is_bad_input_not_a_crash(path, tmp_path):
    with pytest.raises(BadInput) as raised:
        check("rollup_playbook", path, Origin("inv.yml", "group pool"), tmp_path)
    assert_one_line(raised.value.message)
    assert len(raised.value.message) < 700


def listing(group: str, host: str, host_vars: dict[str, object]) -> inventory.Listing:
    group_vars = {"rollup_driver": "xenapi", "rollup_api_url": "http://127.0.0.1:1"}
    merged = {**group_vars, **host_vars}
    return inventory.Listing(
        exported={
            "_meta": {"hostvars": {host: host_vars}},
            "all": {"children": ["ungrouped", group]},
            group: {"hosts": [host], "vars": group_vars},
        },
        merged={
            "_meta": {"hostvars": {host: merged}},
            "all": {"children": ["ungrouped", group]},
            group: {"hosts": [host]},
        },
    )


@pytest.mark.parametrize("value", NASTY)
@pytest.mark.parametrize(
    "host_vars",
    [
        {"ansible_port": "{}"},
        {"ansible_connection": "{}"},
        {"rollup_{}": 1},
        {"rollup_api_password": "s3cret", "rollup_api_user": 5, "rollup_x": "{}"},
    ],
)
def test_names_and_values_from_the_inventory_are_one_line(host_vars, value):
    filled = {
        key.replace("{}", value): item.replace("{}", value) if isinstance(item, str) else item
        for key, item in host_vars.items()
    }
    with pytest.raises(BadInput) as raised:
        inventory.build(f"inv{value}.yml", listing(f"pool{value}", f"h{value}", filled))
    assert_one_line(raised.value.message)
    assert "s3cret" not in raised.value.message


def rollup(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(list(argv))
        except SystemExit as exit:  # argparse's usage errors
            code = int(exit.code or 0)
    return code, err.getvalue()


@pytest.mark.parametrize("value", NASTY)
def test_command_line_values_give_one_line_of_stderr(value, tmp_path: Path):
    state = str(tmp_path / "state")
    for argv in (
        ["plan", f"missing{value}.yml", "--state-dir", state],
        ["plan", "inv.yml", f"stray{value}", "--state-dir", state],
        ["plan", "inv.yml", "--format", f"md{value}", "--state-dir", state],
        ["status", f"run{value}", "--state-dir", state],
    ):
        code, err = rollup(*argv)
        assert code == 2, (argv, err)
        assert re.match(r"rollup( plan| status)?: ", err), err  # usage errors name the command
        assert err.endswith("\n") and len(err.splitlines()) == 1, err
        assert err[:-1].isprintable(), err
