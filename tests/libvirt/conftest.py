"""A real libvirt lab (libvirtd per host, QEMU guests) and the real `rollup` against it.

The lab runs in the test process, so it outlives a controller killed with SIGKILL;
`rollup` runs as a child process, exactly as a pipeline runs it. Needs root and the
packages .ci/run installs.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rollup.config import inventory as inventories
from rollup.drivers import registry
from rollup.lab.libvirt.running import LibvirtLab
from rollup.model import Pool
from tests import loopback
from tests.rollout.conftest import run_rollup, start_rollup

# Each lab gets its own loopback /24 (127.0.220.0 upward; other packages use other
# ranges): a daemon left behind by one test can never answer for the next.
_networks = itertools.count(220)
TARGET = "12.5"


@dataclass
class Lab:
    running: LibvirtLab
    dir: Path
    state: Path

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yml"

    def snapshot(self) -> Pool:
        """The pool as the libvirt driver sees it, built from the lab's inventory."""
        config = inventories.load(str(self.inventory)).pools[0]
        driver = registry.connect(config.driver, config.connection, config.hosts, config.name)
        try:
            return driver.snapshot()
        finally:
            driver.close()

    def counts(self) -> dict[str, int | None]:
        """Each guest's counter, read from the serial log on the host it runs on now."""
        return {guest.name: self.running.count(guest.name) for guest in self.running.guests}

    def rollup(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return run_rollup(self.state, *args, timeout=timeout)

    def start_rollup(self, *args: str) -> subprocess.Popen[str]:
        return start_rollup(self.state, *args)


def events_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    running = LibvirtLab.start(
        hosts=3, vms=4, directory=tmp_path / "lab", network=loopback.network(next(_networks))
    )
    try:
        yield Lab(running, tmp_path / "lab", tmp_path / "state")
    finally:
        running.stop()
