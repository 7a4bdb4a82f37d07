"""A lab pool to point broken inventories at, on loopback networks 127.0.100-109.

The lab lives in the test process; `rollup` runs in-process (`rollup.cli.main`, fast) or as
a child process (`lab.rollup(...)`). Either way a bad input must leave the pool as it was.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import loopback
from tests.rollout.conftest import Lab
from tests.rollout.conftest import start_lab as start_shared_lab

_networks = itertools.cycle(range(100, 110))


def start_lab(directory: Path, *, ssh: bool = False, hosts: int = 3, vms: int = 9) -> Lab:
    return start_shared_lab(
        directory, hosts=hosts, vms=vms, ssh=ssh, network=loopback.network(next(_networks))
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One idle lab pool for a whole module: nothing here may change it."""
    lab = start_lab(tmp_path_factory.mktemp("badinput"))
    try:
        yield lab
    finally:
        lab.running.stop()


def lab_inventory(lab: Lab) -> dict[str, Any]:
    return yaml.safe_load(lab.inventory.read_text())


def pool_group(data: dict[str, Any]) -> dict[str, Any]:
    return next(iter(data["all"]["children"].values()))
