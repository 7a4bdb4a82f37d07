"""Lab hosts with real sshd daemons on 127.0.30.2-99 (other suites use other ranges)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rollup.lab.hosts import LabMachine

_addresses = (f"127.0.30.{n}" for n in itertools.cycle(range(2, 100)))

MakeHost = Callable[..., LabMachine]


@pytest.fixture
def make_lab_host(tmp_path: Path) -> Iterator[MakeHost]:
    """Build powered-on lab hosts (ssh=False: reached by the local connection)."""
    made: list[LabMachine] = []

    def make(name: str = "h1", *, ssh: bool = True, version: str = "8.2.1") -> LabMachine:
        machine = LabMachine(name, tmp_path / "lab", address=next(_addresses) if ssh else None)
        made.append(machine)
        machine.power_on(str(uuid.uuid4()), version)
        return machine

    yield make
    for machine in made:
        machine.close()


@pytest.fixture
def lab_host(make_lab_host: MakeHost) -> LabMachine:
    return make_lab_host()
