"""Powered-on lab hosts (rollup.lab.hosts.LabMachine) for tests, closed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from rollup.lab.hosts import LabMachine

MakeHost = Callable[..., LabMachine]
# As the lab pools of the tests run: a host's yum downloads (lab seconds) take little time.
SPEED = 200.0


def lab_hosts(directory: Path, addresses: Iterator[str]) -> Iterator[MakeHost]:
    """For a fixture: yields a maker of hosts (ssh=False: the local connection)."""
    made: list[LabMachine] = []

    def make(
        name: str = "h1", *, ssh: bool = True, version: str = "8.2.1", speed: float = SPEED
    ) -> LabMachine:
        address = next(addresses) if ssh else None
        machine = LabMachine(name, directory / "lab", address=address, speed=speed)
        made.append(machine)
        machine.power_on(str(uuid.uuid4()), version)
        return machine

    yield make
    for machine in made:
        machine.close()
