"""A driver registered from the tests alone, with no core module changed: the inventory
learns its variables, the checks its words, and `rollup plan` plans its pool."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from rollup import cli
from rollup.drivers import Connection, DriverInfo, InventoryHost, PoolUpdates, Terms, registry
from rollup.errors import Problem
from rollup.model import VM, GiB, Host, Pool
from rollup.values import Context, Variable

RACKS = ("r1", "r2")


def _rack(value: object, context: Context) -> str:
    if value in RACKS:
        return str(value)
    raise Problem(f"must be one of {', '.join(RACKS)}", "r1")


class ToyDriver:
    """A two-host pool whose second host is disabled; only what `rollup plan` reads."""

    name = "toy"
    opened: list[ToyDriver] = []

    def __init__(self, hosts: Sequence[InventoryHost], settings: Mapping[str, object]) -> None:
        self.hosts = hosts
        self.settings = settings
        self.closed = False
        ToyDriver.opened.append(self)

    def snapshot(self, blockers_for: Collection[str] | None = None) -> Pool:
        hosts = tuple(
            Host(
                id=f"id-{h.name}",
                name=h.name,
                address=h.address or h.name,
                memory_total=64 * GiB,
                memory_overhead=2 * GiB,
                memory_free=60 * GiB,
                version="1.0",
                platform_version="1.0",
                enabled=i == 0,
                live=True,
                is_master=False,
                boot_mark="1",
            )
            for i, h in enumerate(self.hosts)
        )
        vm = VM(id="vm-1", name="web", memory=4 * GiB, power_state="Running", host=hosts[0].id)
        return Pool("toy-pool", "toy", "toy", None, False, hosts, (vm,))

    def pending_updates(self, hosts: Collection[str] | None = None) -> PoolUpdates:
        return PoolUpdates()  # a toy cannot tell: a target version decides

    def close(self) -> None:
        self.closed = True


def _connect(
    connection: Connection | None,
    hosts: Sequence[InventoryHost],
    pool: str,
    settings: Mapping[str, object],
) -> ToyDriver:
    return ToyDriver(hosts, settings)


TOY = DriverInfo(
    name="toy",
    summary="a toy pool for the tests",
    connect=_connect,
    terms=Terms(
        keeper="toyd",
        not_live="toyd cannot see it",
        enable_host="toyctl enable",
        hosts_reached="each host is reached by toyd",
    ),
    pool_api=False,
    variables=(
        Variable("rollup_toy_rack", "host", _rack),
        Variable("rollup_toy_zone", "pool", lambda value, context: str(value)),
    ),
)


@pytest.fixture
def toy() -> Iterator[None]:
    registry.register(TOY)
    ToyDriver.opened.clear()
    yield
    registry.unregister("toy")


def _inventory(tmp_path: Path, pool_vars: str = "", rack: str = "r1") -> Path:
    path = tmp_path / "toy.yml"
    path.write_text(
        "all:\n  children:\n    toys:\n"
        f"      vars: {{rollup_driver: toy, rollup_toy_zone: east{pool_vars}}}\n"
        "      hosts:\n"
        f"        t1: {{ansible_host: 127.0.0.1, rollup_toy_rack: {rack}}}\n"
        "        t2: {ansible_host: 127.0.0.2}\n"
    )
    return path


def _plan(
    tmp_path: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    argv = ["plan", str(inventory), "--format", "json", "--state-dir", str(tmp_path / "state")]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_registered_driver_plans_its_pool_in_its_own_words(toy, tmp_path, capsys):
    code, out, err = _plan(tmp_path, _inventory(tmp_path), capsys)
    plan = json.loads(out)
    # t2 is disabled: the check refuses the run, and says so in the driver's words.
    assert code == 3, err
    (disabled,) = [c for c in plan["checks"] if c["name"] == "hosts-enabled"]
    assert disabled["status"] == "fail"
    assert "host t2 is disabled (in maintenance?): enable it (toyctl enable)" in disabled["reason"]
    assert "xe host-enable" not in out
    (driver,) = ToyDriver.opened
    assert driver.closed
    # Its own variables reached it, checked: the pool's as settings, the host's by host.
    assert driver.settings == {"rollup_toy_zone": "east"}
    assert [dict(h.variables) for h in driver.hosts] == [{"rollup_toy_rack": "r1"}, {}]


def test_a_registered_drivers_variables_are_checked_like_rollups_own(toy, tmp_path, capsys):
    code, out, err = _plan(tmp_path, _inventory(tmp_path, rack="r9"), capsys)
    assert (code, out) == (2, "")
    assert "host t1: rollup_toy_rack must be one of r1, r2; e.g. rollup_toy_rack: r1" in err
    assert not ToyDriver.opened  # bad input changes nothing and connects to nothing


def test_a_misspelt_driver_variable_is_named_with_the_nearest_one(toy, tmp_path, capsys):
    path = _inventory(tmp_path)
    path.write_text(path.read_text().replace("rollup_toy_rack", "rollup_toy_rak"))
    code, _, err = _plan(tmp_path, path, capsys)
    assert code == 2
    assert "rollup_toy_rak is not a variable rollup knows; did you mean rollup_toy_rack?" in err


def test_a_driver_without_pool_api_refuses_an_api_url_in_its_words(toy, tmp_path, capsys):
    inventory = _inventory(tmp_path, pool_vars=", rollup_api_url: 'https://x.example'")
    code, _, err = _plan(tmp_path, inventory, capsys)
    assert code == 2
    assert "has no pool API; remove it: each host is reached by toyd" in err


def test_an_unregistered_driver_is_bad_input_listing_the_known_ones(tmp_path, capsys):
    path = tmp_path / "toy.yml"
    path.write_text(
        "all:\n  children:\n    toys:\n      vars: {rollup_driver: toy}\n      hosts: {t1: {}}\n"
    )
    code, out, err = _plan(tmp_path, path, capsys)
    assert (code, out) == (2, "")
    assert "rollup_driver must be one of" in err and "xenapi, libvirt, proxmox" in err, err


def test_rollup_help_names_every_driver_rollup_ships(capsys):
    assert cli.main(["--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert registry.names() and all(f" {name} (" in shown for name in registry.names())
