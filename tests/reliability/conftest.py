"""Labs for the reliability tests: small pools on 127.S.70-99.x, one fresh lab per case.

The Lab of tests/rollout (a RunningLab in the test process, real sshd per host, the real
`rollup` command as a child process) is reused; here a factory lets each case choose
the pool's size, its speed and whether hosts are reached over SSH.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rollup.lab.xapi.running import RunningLab
from tests import loopback
from tests.reliability.matrix import MATRICES
from tests.rollout.conftest import Lab

# 127.S.70.0 - 127.S.99.0 are this package's (tests/loopback.py): never another package's daemons.
_networks = itertools.count(70)
LAST_NETWORK = 99

MakeLab = Callable[..., Lab]


def next_network() -> str:
    third = next(_networks)
    if third > LAST_NETWORK:
        raise RuntimeError("tests/reliability ran out of its loopback networks (70-99)")
    return loopback.network(third)


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[MakeLab]:
    """`make_lab(hosts=3, vms=12, ...)` starts a lab that stops when the test ends."""
    started: list[RunningLab] = []

    def make(
        hosts: int = 3,
        vms: int = 12,
        seed: int = 1,
        speed: float = 200.0,
        ssh: bool = True,
        **scenario: Any,
    ) -> Lab:
        faults = tmp_path / "faults.yml"
        faults.write_text("{}\n")
        running = RunningLab.start(
            hosts=hosts,
            vms=vms,
            seed=seed,
            speed=speed,
            ssh=ssh,
            port=0,
            directory=tmp_path / "lab",
            faults=str(faults),
            network=next_network(),
            # By default the XCP-ng 8.2 pool these tests were written for: a release
            # upgrade by the lab's playbook (yum), checked against the target version.
            **{"release": "8.2.1", "update": "playbook", **scenario},
        )
        started.append(running)
        return Lab(running, tmp_path / "lab", tmp_path / "state", faults)

    try:
        yield make
    finally:
        for running in started:
            running.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every matrix this session filled, after the test results."""
    for matrix in MATRICES:
        if matrix.rows:
            terminalreporter.write_sep("=", "reliability")
            terminalreporter.write_line(matrix.table())
