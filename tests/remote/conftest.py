"""Lab hosts with real sshd daemons on 127.0.30.2-99 (other suites use other ranges)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollup.lab.hosts import LabMachine
from tests import loopback
from tests.lab_hosts import MakeHost, lab_hosts

_addresses = (loopback.address(30, n) for n in itertools.cycle(range(2, 100)))


@pytest.fixture
def make_lab_host(tmp_path: Path) -> Iterator[MakeHost]:
    """Build powered-on lab hosts (ssh=False: reached by the local connection)."""
    yield from lab_hosts(tmp_path, _addresses)


@pytest.fixture
def lab_host(make_lab_host: MakeHost) -> LabMachine:
    return make_lab_host()
